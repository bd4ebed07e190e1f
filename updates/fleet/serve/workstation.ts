// What the workstation's `rtr7 fleet publish` and `rtr7 fleet enroll` do
// against a `rtr7 fleet serve` (server-client.ts, with the admin's
// credential file copied from the server's DATA/admin-credential.json):
// publish checks the release here first (every image against the
// manifest, and signed: an unsigned release is refused before a byte is
// sent, since the server and every unit would refuse it), then uploads
// each file and asks the server to publish; enroll asks the server for a
// new credential for the unit and returns the content of the unit's
// /perm/rtr7/uplink.json (broker URL, username, password, the server
// certificate's fingerprint).
import { createReadStream } from "node:fs";
import { access } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Rtr7Error } from "../../../lib/errors.js";
import type { Logger } from "../../../lib/log.js";
import { manifestSignatureFile } from "../../../lib/trust/release-signature.js";
import { checkedHostname } from "../../../lib/wire/names.js";
import { loadRelease } from "../../release.js";
import { readServerAccess } from "./admin-credential.js";
import { releaseFileNames, type PublishedRelease } from "./release-store.js";
import { serverRequest, type ServerAccess } from "./server-client.js";

/** $XDG_CONFIG_HOME/rtr7/fleet-server.json: the copy of the server's admin-credential.json. */
export function defaultServerCredentialFile(
  env: NodeJS.ProcessEnv = process.env,
  home = os.homedir(),
): string {
  const xdg = env.XDG_CONFIG_HOME;
  return path.join(
    xdg && path.isAbsolute(xdg) ? xdg : path.join(home, ".config"),
    "rtr7",
    "fleet-server.json",
  );
}

/** The credential file, with --server's URL instead of the file's when given. */
export async function serverAccess(credentialFile: string, serverUrl?: string): Promise<ServerAccess> {
  const found = await readServerAccess(credentialFile);
  return serverUrl ? { ...found, url: serverUrl } : found;
}

export async function publishRelease(
  dir: string,
  server: ServerAccess,
  log: Logger,
): Promise<PublishedRelease> {
  const release = await loadRelease(dir);
  await access(path.join(release.dir, manifestSignatureFile)).catch(() => {
    throw new Rtr7Error(
      "RTR7_ERR_SIGNATURE",
      `${release.dir} is not signed (no ${manifestSignatureFile}): the server and every unit that trusts a key would refuse it`,
      { hint: "Sign it with `rtr7 keys sign DIR` (after `rtr7 keys init`), then publish it." },
    );
  });
  const version = encodeURIComponent(release.version);
  for (const name of releaseFileNames) {
    log.info({ subsystem: "fleet-publish", peer: server.url, file: name }, `uploading ${name}`);
    await serverRequest(
      server,
      "PUT",
      `/api/releases/${version}/files/${name}`,
      createReadStream(path.join(release.dir, name)),
      600_000,
    );
  }
  const reply = await serverRequest(server, "POST", `/api/releases/${version}/publish`);
  return JSON.parse(reply.text) as PublishedRelease;
}

export interface UplinkFile {
  server: string;
  username: string;
  password: string;
  serverFingerprint: string;
}

export async function enrollAtServer(hostname: string, server: ServerAccess): Promise<UplinkFile> {
  const reply = await serverRequest(server, "POST", `/api/units/${checkedHostname(hostname)}/enroll`);
  return JSON.parse(reply.text) as UplinkFile;
}
