// The keys a unit trusts: /perm/rtr7/trusted-keys/<KEY ID>.pub, each a
// minisign public key file. Read by the update API (which refuses unsigned
// or foreign-signed updates once one is there) and by recovery-init (which
// refuses a release the unit's keys did not sign, and installs the
// workstation's key into a unit that trusts none). A unit that trusts no
// key behaves as gokrazy's units do and takes unsigned updates. Files are
// written atomically and removed durably, so a power cut leaves the old set
// or the new, never a half-written key; a file that is not a key is
// reported and skipped, never trusted.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { removeDurably, writeFileAtomically } from "../atomic-file.js";
import { formatPublicKey, parsePublicKey, type PublicKey } from "./minisign.js";

export function trustedKeysDir(permDir: string): string {
  return path.join(permDir, "rtr7", "trusted-keys");
}

export interface TrustedKeys {
  keys: PublicKey[];
  /** Files in the directory that are not keys (named with why). */
  skipped: string[];
}

export async function readTrustedKeys(permDir: string): Promise<TrustedKeys> {
  const dir = trustedKeysDir(permDir);
  let names: string[];
  try {
    names = (await readdir(dir)).filter((name) => name.endsWith(".pub")).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { keys: [], skipped: [] };
    throw error;
  }
  const keys: PublicKey[] = [];
  const skipped: string[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    try {
      const key = parsePublicKey(await readFile(file, "utf8"), file);
      if (!keys.some((known) => known.keyId === key.keyId)) keys.push(key);
    } catch (error) {
      skipped.push(`${file}: ${(error as Error).message}`);
    }
  }
  return { keys, skipped };
}

export async function addTrustedKey(permDir: string, key: PublicKey): Promise<void> {
  await writeFileAtomically(path.join(trustedKeysDir(permDir), `${key.keyId}.pub`), formatPublicKey(key), {
    mode: 0o644,
    makeDirectory: true,
  });
}

export async function removeTrustedKey(permDir: string, keyId: string): Promise<void> {
  await removeDurably(path.join(trustedKeysDir(permDir), `${keyId}.pub`));
}

/**
 * Makes `keys` the whole trusted set (`rtr7 recover --new-key`): the new
 * keys are written first, then the others removed, so a power cut in
 * between leaves the unit trusting old and new, never nothing.
 */
export async function replaceTrustedKeys(permDir: string, keys: readonly PublicKey[]): Promise<void> {
  for (const key of keys) await addTrustedKey(permDir, key);
  const keep = new Set(keys.map((key) => `${key.keyId}.pub`));
  let names: string[];
  try {
    names = await readdir(trustedKeysDir(permDir));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  for (const name of names.filter((candidate) => candidate.endsWith(".pub") && !keep.has(candidate)).sort())
    await removeDurably(path.join(trustedKeysDir(permDir), name));
}
