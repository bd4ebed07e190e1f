// What an external mosquitto 2.0 needs to serve a remote fleet (issue 15),
// for `rtr7 fleet serve --print-broker-config`: its password file, an ACL
// file with the rule of lib/wire/jobs.ts (unitMayPublish, unitMaySubscribe),
// and a minimal mosquitto.conf to start from.
//
// The password file is written here, in mosquitto's own `$7$` format
// (PBKDF2-HMAC-SHA512, as mosquitto_passwd 2.0 writes it), from the hashes
// unit-credentials.ts made at each enrollment, rather than by running
// mosquitto_passwd: the server keeps no password in clear, so it can only
// hash a unit's password when it makes it, and the server need not run on
// the broker's machine or have mosquitto installed. The test with the real
// mosquitto proves the format.
//
// The ACL uses patterns, where %u is the logged-in user name (a unit's
// hostname, checked at enrollment, so it holds no + # or /):
//   pattern write rtr7/units/%u/status, .../state, .../jobs/+/update
//   pattern read  rtr7/units/%u/jobs/next
// and the server's user gets `topic readwrite rtr7/#`. mosquitto answers a
// refused publish from an MQTT 3.1.1 client with its normal PUBACK and drops
// the message (the connection stays). mosquitto 2.0's ACL file does not
// refuse a subscription (the SUBACK grants it, unlike the embedded
// broker's 0x80): it refuses, one by one, the deliveries the ACL does not
// let the user read, so a unit subscribed to another's jobs/next receives
// nothing. `use_username_as_clientid` makes each client's id its user
// name, so one unit cannot take over another's session; the server then
// holds one connection. After an enrollment, write the files again and send
// mosquitto SIGHUP: it reads the password and ACL files anew.
import { chmod, mkdir } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomically } from "../../../lib/atomic-file.js";
import { topicRoot } from "../../../lib/wire/jobs.js";
import { mosquittoPasswordHash, serverUsername, type UnitCredentials } from "./unit-credentials.js";

export interface MosquittoFiles {
  passwordFile: string;
  aclFile: string;
  configFile: string;
}

export interface MosquittoConfigOptions {
  /** The listener's port (default 8883) and address (default: all). */
  port?: number;
  host?: string;
  /** The broker's TLS files: the server's (server-certificate.ts, DATA/tls/), so units pin one fingerprint. */
  certFile: string;
  keyFile: string;
  /** The user mosquitto runs as after it starts as root (its `user`); it must be able to read these files. */
  runAs?: string;
  /** Connections at once; default 20,000. */
  maxConnections?: number;
}

/** The ACL file's text: the same rule as unitMayPublish/unitMaySubscribe. */
export function mosquittoAcl(): string {
  const unit = `${topicRoot}/%u`;
  return [
    "# rtr7 fleet serve: who may do what (lib/wire/jobs.ts's unitMayPublish, unitMaySubscribe).",
    "# A unit logs in with its hostname (%u): it writes its own status, state and job updates,",
    "# and reads its own job topic. Nothing else.",
    `pattern write ${unit}/status`,
    `pattern write ${unit}/state`,
    `pattern write ${unit}/jobs/+/update`,
    `pattern read ${unit}/jobs/next`,
    "",
    "# The server's own user.",
    `user ${serverUsername}`,
    `topic readwrite ${topicRoot.split("/")[0]}/#`,
    "",
  ].join("\n");
}

/** The password file's text: one `user:$7$...` line per enrolled unit, and the server's user. */
export async function mosquittoPasswords(credentials: UnitCredentials): Promise<string> {
  const server = await credentials.serverCredential();
  const lines = [`${serverUsername}:${mosquittoPasswordHash(server.password)}`];
  for (const unit of credentials.mosquittoHashes()) lines.push(`${unit.username}:${unit.mosquittoHash}`);
  return lines.join("\n") + "\n";
}

export function mosquittoConf(files: MosquittoFiles, options: MosquittoConfigOptions): string {
  const { certFile, keyFile } = options;
  return [
    "# mosquitto 2.0 for rtr7 fleet serve (made by rtr7 fleet serve --print-broker-config).",
    "# Run: mosquitto -c THIS_FILE. After enrolling units, write the files again and send SIGHUP.",
    "per_listener_settings false",
    "allow_anonymous false",
    `password_file ${files.passwordFile}`,
    `acl_file ${files.aclFile}`,
    "persistence false",
    ...(options.runAs ? [`user ${options.runAs}`] : []),
    "",
    "# TLS only: units log in with a password. They pin this certificate's fingerprint.",
    // Listener options go after `listener`: before it they set up mosquitto's default listener on 1883 too.
    `listener ${options.port ?? 8883}${options.host ? ` ${options.host}` : ""}`,
    `max_connections ${options.maxConnections ?? 20_000}`,
    "use_username_as_clientid true",
    `cafile ${certFile}`,
    `certfile ${certFile}`,
    `keyfile ${keyFile}`,
    "tls_version tlsv1.2",
    "",
  ].join("\n");
}

/**
 * Writes passwd (0600), acl and mosquitto.conf into `dir` for the units
 * enrolled in `credentials`, and returns their paths.
 */
export async function writeMosquittoConfig(
  dir: string,
  credentials: UnitCredentials,
  options: MosquittoConfigOptions,
): Promise<MosquittoFiles> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const files: MosquittoFiles = {
    passwordFile: path.join(dir, "passwd"),
    aclFile: path.join(dir, "acl"),
    configFile: path.join(dir, "mosquitto.conf"),
  };
  await writeFileAtomically(files.passwordFile, await mosquittoPasswords(credentials), { mode: 0o600 });
  await writeFileAtomically(files.aclFile, mosquittoAcl(), { mode: 0o644 });
  await writeFileAtomically(files.configFile, mosquittoConf(files, options), { mode: 0o644 });
  await chmod(dir, 0o700);
  return files;
}
