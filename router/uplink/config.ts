// The uplink's configuration, /perm/rtr7/uplink.json, written by `rtr7
// fleet enroll`: where the broker is, the unit's credential, and the
// fingerprint of the server certificate the unit pins. It is read as
// hostile input: anything but the exact shape is RTR7_ERR_UPLINK_CONFIG
// naming the field (never the password), the uplink is not started, and
// the rest of the unit is unaffected. No file means no uplink.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error } from "../../lib/errors.js";
import { checkedHostname } from "../../lib/wire/names.js";

export const uplinkConfigFile = path.join("rtr7", "uplink.json");

export interface UplinkConfig {
  /** The broker: host and port of mqtts://HOST:PORT. */
  host: string;
  port: number;
  /** The unit's hostname: MQTT client id and user name. */
  username: string;
  password: string;
  /** SHA-256 of the server's certificate, AB:CD:... (upper case). */
  serverFingerprint: string;
}

const fingerprintPattern = /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/;

function configError(file: string, why: string): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_UPLINK_CONFIG", `${file}: ${why}`);
}

/** Checks the parsed JSON of uplink.json; `hostname` is the unit's own. */
export function parseUplinkConfig(value: unknown, hostname: string, file = uplinkConfigFile): UplinkConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw configError(file, "want a JSON object {server, username, password, serverFingerprint}");
  const record = value as Record<string, unknown>;
  const server = record.server;
  let url: URL;
  try {
    url = new URL(typeof server === "string" ? server : "");
  } catch {
    throw configError(file, `server ${JSON.stringify(server)} is not a URL (want mqtts://HOST:PORT)`);
  }
  if (url.protocol !== "mqtts:")
    throw configError(
      file,
      `server must be mqtts://HOST:PORT (got ${url.protocol}): the uplink speaks only TLS`,
    );
  if (url.username !== "" || url.password !== "" || (url.pathname !== "" && url.pathname !== "/"))
    throw configError(file, "server must be mqtts://HOST:PORT with no user, password or path");
  const port = url.port === "" ? 8883 : Number(url.port);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (host === "") throw configError(file, "server names no host");
  const username = record.username;
  if (typeof username !== "string" || username !== hostname)
    throw configError(
      file,
      `username ${JSON.stringify(username)} must be this unit's hostname ${JSON.stringify(hostname)}`,
    );
  checkedHostname(username);
  const password = record.password;
  if (typeof password !== "string" || password === "" || password.length > 1024)
    throw configError(file, "password must be a non-empty string of at most 1024 characters");
  const fingerprint = record.serverFingerprint;
  if (typeof fingerprint !== "string" || !fingerprintPattern.test(fingerprint.toUpperCase()))
    throw configError(file, "serverFingerprint must be a SHA-256 fingerprint (AB:CD:..., 32 bytes)");
  return { host, port, username, password, serverFingerprint: fingerprint.toUpperCase() };
}

/** The configuration on /perm, or undefined when there is no file; throws RTR7_ERR_UPLINK_CONFIG when it is wrong. */
export async function readUplinkConfig(perm: string, hostname: string): Promise<UplinkConfig | undefined> {
  const file = path.join(perm, uplinkConfigFile);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw configError(file, `cannot read it (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  if (Buffer.byteLength(text) > 16 * 1024) throw configError(file, "more than 16 KiB");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw configError(file, `not JSON (${(error as Error).message})`);
  }
  return parseUplinkConfig(parsed, hostname, file);
}
