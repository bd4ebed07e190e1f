// The admin's credential of `rtr7 fleet serve`: DATA/admin-credential.json
// (0600), made at the first start with a random password and never
// rewritten after. It holds everything the workstation needs to reach the
// server (server-client.ts's ServerAccess: the URL, the server
// certificate's fingerprint, the user and password), so the admin copies
// this one file to the workstation and gives it to `rtr7 fleet publish`
// and `rtr7 fleet enroll` with --credential. The URL and fingerprint are
// brought up to date at each start; the password is never logged.
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomically } from "../../../lib/atomic-file.js";
import { Rtr7Error, describeError } from "../../../lib/errors.js";
import type { ServerAccess } from "./server-client.js";

export function adminCredentialFile(dataDir: string): string {
  return path.join(dataDir, "admin-credential.json");
}

/** Reads a ServerAccess file (the admin credential, or its copy on the workstation). */
export async function readServerAccess(file: string): Promise<ServerAccess> {
  let value: Partial<ServerAccess>;
  try {
    value = JSON.parse(await readFile(file, "utf8")) as Partial<ServerAccess>;
  } catch (error) {
    throw new Rtr7Error(
      "RTR7_ERR_FLEET_AUTH",
      `read the fleet server's credential ${file}: ${describeError(error)}`,
    );
  }
  const credentials = value.credentials;
  if (
    typeof value.url !== "string" ||
    typeof value.tlsFingerprint !== "string" ||
    typeof credentials?.username !== "string" ||
    typeof credentials.password !== "string"
  )
    throw new Rtr7Error(
      "RTR7_ERR_FLEET_AUTH",
      `${file} is not a fleet server credential (want {url, tlsFingerprint, credentials: {username, password}})`,
    );
  return { url: value.url, tlsFingerprint: value.tlsFingerprint, credentials };
}

/** DATA/admin-credential.json, made if missing; its url and fingerprint set to the server's now. */
export async function ensureAdminCredential(
  dataDir: string,
  url: string,
  tlsFingerprint: string,
): Promise<ServerAccess> {
  const file = adminCredentialFile(dataDir);
  const existing = await readServerAccess(file).catch(() => undefined);
  const access: ServerAccess = {
    url,
    tlsFingerprint,
    credentials: existing?.credentials ?? {
      username: "admin",
      password: randomBytes(18).toString("base64url"),
    },
  };
  if (existing?.url !== url || existing.tlsFingerprint !== tlsFingerprint)
    await writeFileAtomically(file, JSON.stringify(access, null, 2) + "\n", {
      mode: 0o600,
      makeDirectory: true,
    });
  return access;
}
