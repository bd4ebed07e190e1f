// Signing what safe-update and a rollout install, on the workstation: once
// `rtr7 keys init` made a key, every run directory's manifest.json goes to
// the unit with a signature by the current key, whatever made the images
// (`rtr7 image build`, a --build-command, a --release built before the key
// existed or signed by a key a rotation has since retired). The signature
// carries the release's own time (its manifest's buildTime, or the time of
// the signature it replaces), never the time of the push: re-signing an old
// release must not make it look newer to the unit's rollback protection.
// A signature by a key this workstation never had is left as it is: it is
// someone else's, and the unit decides whether it trusts it.
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { describeError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import type { PublicKey, SigningKey } from "../lib/trust/minisign.js";
import { parseSignature } from "../lib/trust/minisign.js";
import { manifestSignatureFile, verifyManifest } from "../lib/trust/release-signature.js";
import { loadSigningKey, retiredPublicKeys, signReleaseDir } from "./keys.js";

export interface RunSigning {
  key: SigningKey;
  /** Keys a rotation replaced: their signatures are renewed, keeping their time. */
  retired: PublicKey[];
}

export type SignOutcome = "unsigned" | "kept" | "signed" | "renewed" | "foreign";

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

/** Makes sure DIR/manifest.json is signed by the current key (see the header); says what it did. */
export async function signRunManifest(
  dir: string,
  signing: RunSigning | undefined,
  log: Logger,
): Promise<SignOutcome> {
  const manifestFile = path.join(dir, "manifest.json");
  const signatureFile = path.join(dir, manifestSignatureFile);
  if (!signing) return (await exists(signatureFile)) ? "kept" : "unsigned";
  if (!(await exists(manifestFile))) {
    log.warn(
      `${dir} has no manifest.json, so there is nothing to sign: a unit that trusts a key will refuse these images (let the build write one, as \`rtr7 image build\` does)`,
    );
    return "unsigned";
  }
  const current = signing.key.publicKey;
  if (!(await exists(signatureFile))) {
    await signReleaseDir(dir, signing.key);
    log.info({ keyId: current.keyId }, `Signed manifest.json with key ${current.keyId}.`);
    return "signed";
  }
  const text = await readFile(signatureFile, "utf8");
  let keyId: string;
  try {
    keyId = parseSignature(text, signatureFile).keyId;
  } catch (error) {
    log.warn(`${signatureFile} is not a signature (${describeError(error)}); signing anew.`);
    await signReleaseDir(dir, signing.key);
    return "signed";
  }
  if (keyId === current.keyId) return "kept";
  const manifest = await readFile(manifestFile);
  let signedAtMs: number;
  try {
    signedAtMs = verifyManifest(manifest, text, signing.retired, signatureFile).signedAtMs;
  } catch {
    log.warn(
      { keyId },
      `${signatureFile} is signed by key ${keyId}, which this workstation does not hold: sent as it is, for the unit to judge.`,
    );
    return "foreign";
  }
  await signReleaseDir(dir, signing.key, { signedAtMs });
  log.info(
    { keyId: current.keyId, retired: keyId },
    `Renewed manifest.json's signature: retired key ${keyId} → current key ${current.keyId} (its release time kept).`,
  );
  return "renewed";
}

/** What safe-update and rollouts sign with: the current key and the retired ones; undefined before `rtr7 keys init`. */
export async function loadRunSigning(keysDir: string): Promise<RunSigning | undefined> {
  const key = await loadSigningKey(keysDir);
  return key ? { key, retired: await retiredPublicKeys(keysDir) } : undefined;
}
