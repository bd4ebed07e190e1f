// The Teensy rebootor: a Teensy (USB 16c0:0477) wired to the unit's reset
// pins. Writing the output report "reboot" to it resets the unit, which then
// boots from the network. The HID transport is a parameter (node-hid, loaded
// only when needed, by default) so tests can stand in for the hardware.
// No rebootor attached is not an error: recovery goes on and the user resets
// the unit by hand.
import { Rtr7Error, describeError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";

export const rebootorVendorId = 0x16c0;
export const rebootorProductId = 0x0477;

/** Report ID 0 first (hidapi's convention), then the 6 bytes the firmware acts on. */
export const resetReport: readonly number[] = [0x00, ...Buffer.from("reboot", "ascii")];

/** One HID device as the transport lists it. */
export interface HidDeviceInfo {
  path: string;
  serialNumber?: string;
  vendorId: number;
  productId: number;
  product?: string;
}

/** An opened HID device. */
export interface HidDevice {
  /** Writes one output report; returns the number of bytes written. */
  write(bytes: number[]): number;
  close(): void;
}

/** How rtr7 reaches HID devices; node-hid unless a test passes its own. */
export interface HidTransport {
  devices(): HidDeviceInfo[];
  open(path: string): HidDevice;
}

export interface Rebootor {
  path: string;
  serialNumber?: string;
  product?: string;
}

export type ResetOutcome =
  { outcome: "reset"; path: string; serialNumber?: string } | { outcome: "no-rebootor" };

export interface ResetOptions {
  /** Serial number or device path of the rebootor to use; needed when several are attached. */
  rebootor?: string;
  transport?: HidTransport;
  log: Logger;
}

/** The attached rebootors, in the transport's order, each path once. */
export async function listRebootors(options: { transport?: HidTransport } = {}): Promise<Rebootor[]> {
  const transport = options.transport ?? (await nodeHidTransport());
  let devices: HidDeviceInfo[];
  try {
    devices = transport.devices();
  } catch (error) {
    throw new Rtr7Error("RTR7_ERR_REBOOTOR_OPEN", `list USB HID devices: ${describeError(error)}`, {
      cause: error,
      hint: "Check that this machine can list hidraw devices (ls /dev/hidraw*); run as root if it cannot.",
    });
  }
  const seen = new Set<string>();
  const rebootors: Rebootor[] = [];
  for (const device of devices) {
    if (device.vendorId !== rebootorVendorId || device.productId !== rebootorProductId) continue;
    if (!device.path || seen.has(device.path)) continue;
    seen.add(device.path);
    rebootors.push({
      path: device.path,
      ...(device.serialNumber ? { serialNumber: device.serialNumber } : {}),
      ...(device.product ? { product: device.product } : {}),
    });
  }
  return rebootors;
}

/**
 * Resets the unit through the rebootor. Resolves with "no-rebootor" (after
 * asking the user to reset the unit by hand) when none is attached; throws
 * an Rtr7Error when one is attached but cannot be used.
 */
export async function resetUnit(options: ResetOptions): Promise<ResetOutcome> {
  const log = options.log.child({ subsystem: "rebootor" });
  const transport = options.transport ?? (await nodeHidTransport());
  const attached = await listRebootors({ transport });
  const chosen = chooseRebootor(attached, options.rebootor);
  if (chosen === undefined) {
    log.warn(
      { event: "no-rebootor" },
      "no Teensy rebootor attached (USB 16c0:0477): reset the unit by hand now (power-cycle it)",
    );
    return { outcome: "no-rebootor" };
  }
  const peer = describeRebootor(chosen);
  let device: HidDevice;
  try {
    device = transport.open(chosen.path);
  } catch (error) {
    throw new Rtr7Error("RTR7_ERR_REBOOTOR_OPEN", `open rebootor ${peer}: ${describeError(error)}`, {
      cause: error,
    });
  }
  try {
    writeResetReport(device, peer);
  } finally {
    try {
      device.close();
    } catch (error) {
      log.debug({ peer: chosen.path, err: error }, "closing the rebootor failed");
    }
  }
  log.info({ peer: chosen.path, event: "reset", serialNumber: chosen.serialNumber }, "reset the unit");
  return {
    outcome: "reset",
    path: chosen.path,
    ...(chosen.serialNumber ? { serialNumber: chosen.serialNumber } : {}),
  };
}

function writeResetReport(device: HidDevice, peer: string): void {
  let written: number;
  try {
    written = device.write([...resetReport]);
  } catch (error) {
    throw new Rtr7Error(
      "RTR7_ERR_REBOOTOR_WRITE",
      `write reset report to rebootor ${peer}: ${describeError(error)}`,
      {
        cause: error,
      },
    );
  }
  if (written < resetReport.length) {
    throw new Rtr7Error(
      "RTR7_ERR_REBOOTOR_WRITE",
      `write reset report to rebootor ${peer}: wrote ${written} bytes, want ${resetReport.length}`,
    );
  }
}

/**
 * The rebootor to use: the one `wanted` names (serial number or path), else
 * the only one attached; undefined when none is attached and none was named.
 */
export function chooseRebootor(attached: Rebootor[], wanted: string | undefined): Rebootor | undefined {
  if (wanted !== undefined) {
    const match = attached.find((rebootor) => rebootor.serialNumber === wanted || rebootor.path === wanted);
    if (match) return match;
    const have =
      attached.length === 0 ? "none is attached" : `attached: ${attached.map(describeRebootor).join(", ")}`;
    throw new Rtr7Error(
      "RTR7_ERR_REBOOTOR_NOT_FOUND",
      `--rebootor ${wanted}: no rebootor has that serial or path; ${have}`,
    );
  }
  if (attached.length > 1) {
    throw new Rtr7Error(
      "RTR7_ERR_REBOOTOR_AMBIGUOUS",
      `${attached.length} rebootors attached: ${attached.map(describeRebootor).join(", ")}`,
    );
  }
  return attached[0];
}

/** `serial 1234 (/dev/hidraw3)`, or just the path when the device has no serial number. */
export function describeRebootor(rebootor: Rebootor): string {
  return rebootor.serialNumber ? `serial ${rebootor.serialNumber} (${rebootor.path})` : rebootor.path;
}

/** node-hid behind the HidTransport interface; loaded here so commands without hardware never load it. */
export async function nodeHidTransport(): Promise<HidTransport> {
  let hid: typeof import("node-hid");
  try {
    hid = await import("node-hid");
  } catch (error) {
    throw new Rtr7Error("RTR7_ERR_REBOOTOR_OPEN", `load node-hid: ${describeError(error)}`, {
      cause: error,
      hint: "Reinstall the dependencies (npm ci): node-hid's prebuilt binary did not load.",
    });
  }
  return {
    devices: () =>
      hid
        .devices()
        .filter((device): device is typeof device & { path: string } => typeof device.path === "string")
        .map((device) => ({
          path: device.path,
          vendorId: device.vendorId,
          productId: device.productId,
          ...(device.serialNumber ? { serialNumber: device.serialNumber } : {}),
          ...(device.product ? { product: device.product } : {}),
        })),
    open: (path) => new hid.HID(path),
  };
}
