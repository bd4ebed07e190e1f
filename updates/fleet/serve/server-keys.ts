// The fleet keys `rtr7 fleet serve` checks a published release against:
// DATA/trusted-keys/KEYID.pub, minisign public key files (the fleet's
// signing.pub, from `rtr7 keys show` or `fleet serve --trust-key FILE`).
// The server checks only to refuse early what units would refuse anyway;
// the units' own trusted keys are what decides. A file that is not a key is
// logged and skipped, never trusted.
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomically } from "../../../lib/atomic-file.js";
import { describeError } from "../../../lib/errors.js";
import type { Logger } from "../../../lib/log.js";
import { formatPublicKey, parsePublicKey, type PublicKey } from "../../../lib/trust/minisign.js";

export function serverKeysDir(dataDir: string): string {
  return path.join(dataDir, "trusted-keys");
}

export async function serverKeys(dataDir: string, log: Logger): Promise<PublicKey[]> {
  const dir = serverKeysDir(dataDir);
  const names = await readdir(dir).catch(() => [] as string[]);
  const keys: PublicKey[] = [];
  for (const name of names.filter((entry) => entry.endsWith(".pub")).sort()) {
    const file = path.join(dir, name);
    try {
      keys.push(parsePublicKey(await readFile(file, "utf8"), file));
    } catch (error) {
      log.warn({ subsystem: "fleet-serve", file }, `skipped ${file}: ${describeError(error)}`);
    }
  }
  return keys;
}

/** Copies a public key file into DATA/trusted-keys/ under its key id. */
export async function addServerKey(dataDir: string, file: string): Promise<PublicKey> {
  const key = parsePublicKey(await readFile(file, "utf8"), file);
  await writeFileAtomically(path.join(serverKeysDir(dataDir), `${key.keyId}.pub`), formatPublicKey(key), {
    mode: 0o644,
    makeDirectory: true,
  });
  return key;
}
