// What the recovery server told the unit, read from the kernel command line
// that its pxelinux config set: where the server is, the unit's hostname,
// the run's session token, and optionally which disk to use.
import { cmdlineKeys } from "../lib/wire/report.js";

export interface RecoveryParameters {
  server: string;
  port: number;
  hostname: string;
  token: string;
  /** rtr7.disk=sda or /dev/sda: the disk to write, when the unit has several. */
  disk?: string;
}

export function parseCmdline(cmdline: string): RecoveryParameters {
  const values = new Map<string, string>();
  for (const word of cmdline.trim().split(/\s+/)) {
    const equals = word.indexOf("=");
    if (equals > 0) values.set(word.slice(0, equals), word.slice(equals + 1));
  }
  const required = (key: string): string => {
    const value = values.get(key);
    if (value === undefined || value === "") {
      throw new Error(`kernel command line: ${key}= is missing (got: ${cmdline.trim()})`);
    }
    return value;
  };
  const port = Number(values.get(cmdlineKeys.port) ?? "7773");
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`kernel command line: ${cmdlineKeys.port}=${values.get(cmdlineKeys.port)} is not a port`);
  }
  const disk = values.get("rtr7.disk");
  return {
    server: required(cmdlineKeys.server),
    port,
    hostname: required(cmdlineKeys.hostname),
    token: required(cmdlineKeys.token),
    ...(disk ? { disk } : {}),
  };
}
