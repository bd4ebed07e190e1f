// Driving a firmware's boot menu over the serial console so the unit boots
// from the network although its disk comes first: wait for the menu prompt,
// press the menu key, read the numbered boot devices, press the key of the
// first one that boots from the network. What each firmware prints and wants
// is in one table; the reading (BootMenuScanner) is pure and replayed on
// captured transcripts in tests; driveBootMenu adds the console and the
// time limits.
import { Rtr7Error, describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";

export type BootMenuKind = "seabios" | "apu2" | "none";
export type BootMenuFirmwareName = Exclude<BootMenuKind, "none">;

export interface BootMenuFirmware {
  /** Text the firmware prints while it waits for the menu key (matched ignoring case). */
  prompt: string;
  /** The bytes a serial terminal sends for the menu key. */
  key: string;
  keyName: string;
  /** The line that starts the list of boot devices. */
  heading: string;
  /** One entry of the list: the character to press, then the device. */
  entry: RegExp;
  /** A device that boots from the network. */
  networkEntry: RegExp;
}

// SeaBIOS lists entries as "1. ata0-0: QEMU HARDDISK ..." and, since 1.13, goes
// on with letters after 9 ("a. iPXE (PCI 00:08.0)"; t is kept for the TPM menu,
// and printed after a blank line). The key to press is the character printed.
const seabiosList = {
  heading: "Select boot device:",
  entry: /^\s*([1-9a-z])\.\s+(\S.*)$/,
  networkEntry: /pxe|network|net ?boot/i,
};

export const bootMenuFirmware: Record<BootMenuFirmwareName, BootMenuFirmware> = {
  // SeaBIOS, as in QEMU (-boot menu=on): "Press ESC for boot menu."
  seabios: { prompt: "Press ESC for boot menu", key: "\x1b", keyName: "ESC", ...seabiosList },
  // PC Engines apu2 (coreboot + SeaBIOS): "Press F10 key now for boot menu", with
  // ", N for PXE boot" or ":" after it on some builds. SeaBIOS's serial console
  // reads F10 as the VT220 sequence ESC [ 2 1 ~.
  apu2: { prompt: "Press F10 key now for boot menu", key: "\x1b[21~", keyName: "F10", ...seabiosList },
};

export interface BootMenuEntry {
  /** The character that selects the entry. */
  key: string;
  label: string;
}

export type BootMenuAction =
  | { action: "press-menu-key"; key: string; keyName: string }
  | { action: "choose"; entry: BootMenuEntry; entries: BootMenuEntry[] }
  | { action: "no-network-entry"; entries: BootMenuEntry[] };

export type BootMenuPhase = "wait-prompt" | "wait-heading" | "entries" | "done";

/** Reads console lines and says which key to press when; no I/O, no clock. */
export class BootMenuScanner {
  phase: BootMenuPhase = "wait-prompt";
  readonly entries: BootMenuEntry[] = [];
  private pressedOnPendingLine = false;

  constructor(readonly firmware: BootMenuFirmware) {}

  /**
   * Feeds one cleaned line, or (complete = false) the text so far of a line
   * that has not ended yet: a prompt may wait for its key before its newline.
   */
  feed(line: string, complete: boolean): BootMenuAction | undefined {
    if (this.phase === "done") return undefined;
    const pressedForThisLine = this.pressedOnPendingLine;
    if (complete) this.pressedOnPendingLine = false;
    if (this.phase === "entries") return complete ? this.feedEntry(line) : undefined;
    if (complete && includesIgnoringCase(line, this.firmware.heading)) {
      this.phase = "entries";
      return undefined;
    }
    // The prompt again in a later line means the unit booted again: press again.
    if (!pressedForThisLine && includesIgnoringCase(line, this.firmware.prompt)) {
      this.pressedOnPendingLine = !complete;
      this.phase = "wait-heading";
      return { action: "press-menu-key", key: this.firmware.key, keyName: this.firmware.keyName };
    }
    return undefined;
  }

  private feedEntry(line: string): BootMenuAction | undefined {
    if (line.trim() === "") return undefined;
    const match = this.firmware.entry.exec(line);
    if (match?.[1] !== undefined && match[2] !== undefined) {
      const entry = { key: match[1], label: match[2].trim() };
      this.entries.push(entry);
      if (!this.firmware.networkEntry.test(entry.label)) return undefined;
      this.phase = "done";
      return { action: "choose", entry, entries: [...this.entries] };
    }
    if (this.entries.length === 0) return undefined;
    this.phase = "done";
    return { action: "no-network-entry", entries: [...this.entries] };
  }
}

function includesIgnoringCase(text: string, wanted: string): boolean {
  return text.toLowerCase().includes(wanted.toLowerCase());
}

export interface BootMenuTimeouts {
  /** From the start until the prompt shows (the unit has to be reset and run its firmware first). */
  promptMs: number;
  /** From pressing the menu key until a network entry shows. */
  menuMs: number;
}

export const defaultBootMenuTimeouts: BootMenuTimeouts = { promptMs: 120_000, menuMs: 20_000 };

/** What the driver needs from a console (SerialConsole provides it). */
export interface BootMenuConsole {
  readonly path: string;
  /** Calls listener with each cleaned line and the cleaned text of the line not yet ended; returns an unsubscribe function. */
  watchText(listener: (line: string, complete: boolean) => void): () => void;
  write(data: string): Promise<void>;
}

export interface BootMenuChoice {
  firmware: BootMenuFirmwareName;
  entry: BootMenuEntry;
  entries: BootMenuEntry[];
}

export interface DriveBootMenuOptions {
  firmware: BootMenuFirmwareName;
  log: Logger;
  timeouts?: Partial<BootMenuTimeouts>;
  /** Aborting (the console closing) stops the driver with RTR7_ERR_BOOT_MENU. */
  signal?: AbortSignal;
}

/**
 * Presses the menu key at the prompt and the key of the first network entry.
 * Resolves with the chosen entry once its key is sent; rejects with
 * RTR7_ERR_BOOT_MENU when a step does not happen in time or the menu has no
 * network entry.
 */
export function driveBootMenu(
  serial: BootMenuConsole,
  options: DriveBootMenuOptions,
): Promise<BootMenuChoice> {
  const firmware = bootMenuFirmware[options.firmware];
  const timeouts = { ...defaultBootMenuTimeouts, ...options.timeouts };
  const log = options.log;
  const scanner = new BootMenuScanner(firmware);
  const describe = `boot menu (${options.firmware}) on ${serial.path}`;

  return new Promise((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (outcome: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      unsubscribe();
      options.signal?.removeEventListener("abort", onAbort);
      outcome();
    };
    const fail = (message: string, cause?: unknown): void =>
      finish(() => reject(new Rtr7Error("RTR7_ERR_BOOT_MENU", `${describe}: ${message}`, { cause })));
    const arm = (ms: number): void => {
      clearTimeout(timer);
      timer = setTimeout(() => fail(timeoutMessage(scanner, firmware, ms)), ms);
    };
    const onAbort = (): void => fail("the console closed before the menu was driven");
    const send = (data: string, what: string, then: () => void): void => {
      serial.write(data).then(then, (error: unknown) => fail(`send ${what}: ${describeError(error)}`, error));
    };

    const unsubscribe = serial.watchText((line, complete) => {
      if (settled) return;
      const before = scanner.phase;
      const action = scanner.feed(line, complete);
      if (before === "wait-prompt" && scanner.phase !== "wait-prompt") arm(timeouts.menuMs);
      if (action?.action === "press-menu-key") {
        log.info({ event: "boot-menu" }, `boot menu: pressing ${action.keyName}`);
        arm(timeouts.menuMs);
        send(action.key, action.keyName, () => undefined);
      } else if (action?.action === "choose") {
        const { entry, entries } = action;
        log.info({ event: "boot-menu", key: entry.key }, `boot menu: choosing ${entry.key}. ${entry.label}`);
        send(entry.key, `key ${entry.key}`, () =>
          finish(() => resolve({ firmware: options.firmware, entry, entries })),
        );
      } else if (action?.action === "no-network-entry") {
        fail(`the menu has no network (iPXE/PXE) entry: ${listEntries(action.entries)}`);
      }
    });
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    arm(timeouts.promptMs);
  });
}

function timeoutMessage(scanner: BootMenuScanner, firmware: BootMenuFirmware, ms: number): string {
  const within = `within ${formatSeconds(ms)}`;
  switch (scanner.phase) {
    case "wait-prompt":
      return `no "${firmware.prompt}" prompt ${within}`;
    case "wait-heading":
      return `pressed ${firmware.keyName} but no "${firmware.heading}" ${within}`;
    default:
      return `no network (iPXE/PXE) entry in the menu ${within}; entries: ${listEntries(scanner.entries)}`;
  }
}

function listEntries(entries: BootMenuEntry[]): string {
  return entries.length === 0 ? "none" : entries.map((entry) => `${entry.key}. ${entry.label}`).join("; ");
}

function formatSeconds(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
