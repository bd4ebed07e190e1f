// The unit's serial console: opens the port (serialport by default, any
// SerialPortLike in tests), turns its output into clean lines, logs each one
// as `[serial] <path> <line>`, appends the raw bytes to a log file, notices a
// kernel panic, and drives the firmware's boot menu when asked to.
import { EventEmitter } from "node:events";
import { createWriteStream, type WriteStream } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import { Rtr7Error, describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import {
  driveBootMenu,
  type BootMenuChoice,
  type BootMenuConsole,
  type BootMenuKind,
  type BootMenuTimeouts,
} from "./boot-menu.js";
import { LineAssembler, cleanLine } from "./lines.js";

/** The part of serialport's SerialPort the console uses. */
export interface SerialPortLike {
  readonly isOpen: boolean;
  open(callback: (error: Error | null) => void): void;
  write(data: Buffer, callback: (error: Error | null | undefined) => void): boolean;
  close(callback: (error?: Error | null) => void): void;
  on(event: "data", listener: (chunk: Buffer) => void): this;
  on(event: "error", listener: (error: Error) => void): this;
  on(event: "close", listener: () => void): this;
}

/** Creates a port, not yet open. */
export type SerialPortFactory = (options: {
  path: string;
  baudRate: number;
}) => SerialPortLike | Promise<SerialPortLike>;

export interface ConsoleOptions {
  /** The serial device, e.g. /dev/ttyUSB0. */
  path: string;
  baudRate?: number;
  /** Append the raw console output (escape sequences and all) to this file. */
  logFile?: string;
  log: Logger;
  /** Drive this firmware's boot menu to boot from the network; "none" only watches. */
  bootMenu?: BootMenuKind;
  bootMenuTimeouts?: Partial<BootMenuTimeouts>;
  portFactory?: SerialPortFactory;
}

const kernelPanic = /Kernel panic - not syncing/;

type ConsoleEvents = {
  /** Every complete line, cleaned (no escape sequences), empty ones included. */
  line: [line: string];
  panic: [error: Rtr7Error];
  close: [];
};

/** Opens the console; rejects with RTR7_ERR_SERIAL_OPEN when the port or the log file cannot be opened. */
export async function openConsole(options: ConsoleOptions): Promise<SerialConsole> {
  const baudRate = options.baudRate ?? 115200;
  const log = options.log.child({ subsystem: "serial", peer: options.path });
  const logFile = options.logFile === undefined ? undefined : await openLogFile(options.logFile);
  let port: SerialPortLike;
  try {
    port = await (options.portFactory ?? serialPortFactory)({ path: options.path, baudRate });
    await new Promise<void>((resolve, reject) => port.open((error) => (error ? reject(error) : resolve())));
  } catch (error) {
    logFile?.end();
    throw new Rtr7Error(
      "RTR7_ERR_SERIAL_OPEN",
      `open serial console ${options.path} at ${baudRate} baud: ${describeError(error)}`,
      { cause: error },
    );
  }
  log.info({ event: "open", baudRate }, "watching the console");
  const serialConsole = new SerialConsole(options.path, port, log, logFile);
  if (options.bootMenu !== undefined && options.bootMenu !== "none") {
    serialConsole.startBootMenu(options.bootMenu, options.bootMenuTimeouts);
  }
  return serialConsole;
}

export class SerialConsole extends EventEmitter<ConsoleEvents> implements BootMenuConsole {
  private readonly decoder = new StringDecoder("utf8");
  private readonly lines = new LineAssembler();
  private readonly textListeners = new Set<(line: string, complete: boolean) => void>();
  private readonly closing = new AbortController();
  private bootMenu: Promise<BootMenuChoice | undefined> = Promise.resolve(undefined);
  private panic?: Rtr7Error;
  private closed?: Promise<void>;

  constructor(
    readonly path: string,
    private readonly port: SerialPortLike,
    private readonly log: Logger,
    private logFile: WriteStream | undefined,
  ) {
    super();
    port.on("data", (chunk) => this.receive(chunk));
    port.on("error", (error) => this.log.warn({ err: error }, "serial port error"));
    port.on("close", () => {
      if (this.closed) return;
      this.log.warn({ event: "closed" }, "the serial port closed (device unplugged?)");
      void this.close();
    });
    logFile?.on("error", (error) => {
      this.log.warn(
        { err: error, file: logFile.path },
        "cannot write the console log file; going on without it",
      );
      this.logFile = undefined;
    });
  }

  /** Whether close() was called or the port went away. */
  get isClosed(): boolean {
    return this.closed !== undefined;
  }

  /**
   * The boot menu's outcome: the entry chosen, undefined when not asked to
   * drive a menu; rejects with RTR7_ERR_BOOT_MENU when driving it failed.
   */
  bootMenuChoice(): Promise<BootMenuChoice | undefined> {
    return this.bootMenu;
  }

  /** Rejects with RTR7_ERR_KERNEL_PANIC (the panic line in its message) once the console shows a kernel panic. */
  kernelPanic(): Promise<never> {
    if (this.panic) return Promise.reject(this.panic);
    return new Promise((_resolve, reject) => this.once("panic", reject));
  }

  watchText(listener: (line: string, complete: boolean) => void): () => void {
    this.textListeners.add(listener);
    return () => this.textListeners.delete(listener);
  }

  /** Sends bytes to the unit (keys for its firmware). */
  write(data: string | Buffer): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`console ${this.path} is closed`));
    const bytes = typeof data === "string" ? Buffer.from(data, "latin1") : data;
    this.log.debug({ event: "send", bytes: bytes.toString("hex") }, "sending to the unit");
    return new Promise((resolve, reject) => {
      this.port.write(bytes, (error) => (error ? reject(error) : resolve()));
    });
  }

  /** Stops the boot-menu driver, closes the port and flushes the log file; safe to call twice. */
  close(): Promise<void> {
    this.closed ??= this.shutDown();
    return this.closed;
  }

  /** Called by openConsole before any data can arrive, so no prompt is missed. */
  startBootMenu(
    firmware: Exclude<BootMenuKind, "none">,
    timeouts: Partial<BootMenuTimeouts> | undefined,
  ): void {
    const running = driveBootMenu(this, { firmware, log: this.log, timeouts, signal: this.closing.signal });
    running.catch(() => undefined); // the caller sees the failure through bootMenuChoice()
    this.bootMenu = running;
  }

  private receive(chunk: Buffer): void {
    this.writeLogFile(chunk);
    for (const raw of this.lines.push(this.decoder.write(chunk))) this.completeLine(cleanLine(raw));
    const pending = this.lines.pending;
    if (pending !== "") this.notifyText(cleanLine(pending), false);
  }

  private completeLine(line: string): void {
    if (line.trim() !== "") this.log.info({ event: "console" }, line);
    this.emit("line", line);
    this.notifyText(line, true);
    if (!this.panic && kernelPanic.test(line)) {
      this.panic = new Rtr7Error(
        "RTR7_ERR_KERNEL_PANIC",
        `kernel panic on the console ${this.path}: ${line.trim()}`,
      );
      this.log.error({ event: "kernel-panic" }, `kernel panic: ${line.trim()}`);
      this.emit("panic", this.panic);
    }
  }

  private notifyText(line: string, complete: boolean): void {
    for (const listener of [...this.textListeners]) listener(line, complete);
  }

  private writeLogFile(chunk: Buffer): void {
    this.logFile?.write(chunk);
  }

  private async shutDown(): Promise<void> {
    this.closing.abort();
    for (const raw of this.lines.push(this.decoder.end())) this.completeLine(cleanLine(raw));
    if (this.lines.pending !== "") this.completeLine(cleanLine(this.lines.pending));
    if (this.port.isOpen) {
      await new Promise<void>((resolve) =>
        this.port.close((error) => {
          if (error) this.log.debug({ err: error }, "closing the serial port failed");
          resolve();
        }),
      );
    }
    const file = this.logFile;
    this.logFile = undefined;
    if (file) await new Promise<void>((resolve) => file.end(resolve));
    this.emit("close");
  }
}

async function openLogFile(path: string): Promise<WriteStream> {
  const stream = createWriteStream(path, { flags: "a" });
  try {
    await new Promise<void>((resolve, reject) => {
      stream.once("open", () => resolve());
      stream.once("error", reject);
    });
  } catch (error) {
    throw new Rtr7Error("RTR7_ERR_SERIAL_OPEN", `open console log file ${path}: ${describeError(error)}`, {
      cause: error,
      hint: "Check that the log file's directory exists and is writable, or choose another file.",
    });
  }
  return stream;
}

const serialPortFactory: SerialPortFactory = async ({ path, baudRate }) => {
  const { SerialPort } = await import("serialport");
  return new SerialPort({ path, baudRate, autoOpen: false });
};
