// What the recovery server told the unit, read from the kernel command line
// that its pxelinux config set: where the server is, the unit's hostname,
// the run's session token, and optionally which disk to use. The keys are
// lib/wire/kernel-cmdline.ts's, the ones the server writes. A missing or
// malformed value is RTR7_ERR_CMDLINE naming the key and the line seen.
import { Rtr7Error } from "../lib/errors.js";
import { cmdlineValues, recoveryCmdlineKeys } from "../lib/wire/kernel-cmdline.js";

export interface RecoveryParameters {
  server: string;
  port: number;
  hostname: string;
  token: string;
  /** rtr7.disk=sda or /dev/sda: the disk to write, when the unit has several. */
  disk?: string;
}

/** router7's recovery HTTP port, when the command line names none. */
const defaultPort = 7773;

export function parseCmdline(cmdline: string): RecoveryParameters {
  const values = cmdlineValues(cmdline);
  const required = (key: string): string => {
    const value = values.get(key);
    if (value === undefined || value === "") {
      throw new Rtr7Error(
        "RTR7_ERR_CMDLINE",
        `kernel command line: ${key}= is missing (got: ${cmdline.trim()})`,
      );
    }
    return value;
  };
  const portText = values.get(recoveryCmdlineKeys.port);
  const port = portText === undefined ? defaultPort : /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Rtr7Error(
      "RTR7_ERR_CMDLINE",
      `kernel command line: ${recoveryCmdlineKeys.port}=${portText ?? ""} is not a port (want 1 to 65535)`,
    );
  }
  const disk = values.get(recoveryCmdlineKeys.disk);
  return {
    server: required(recoveryCmdlineKeys.server),
    port,
    hostname: required(recoveryCmdlineKeys.hostname),
    token: required(recoveryCmdlineKeys.token),
    ...(disk ? { disk } : {}),
  };
}
