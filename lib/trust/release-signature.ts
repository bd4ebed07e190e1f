// What rtr7 signs, and what the signatures mean; used by the workstation
// (rtr7 image build, keys rotate, safe-update, fleet) and the unit (its
// update API, recovery-init) alike:
//  - a release: the bytes of manifest.json (each image's name, size and
//    SHA-256, the version, the kind: a fleet release or one hostname's
//    build) in manifest.json.minisig, whose trusted comment carries the
//    version, the kind and the signing time in milliseconds. The time
//    orders releases for rollback protection: a unit refuses a release
//    signed before the one it runs, unless a person asked for a downgrade.
//  - a key rotation: the new key's public key file, signed by the key it
//    replaces (TUF's rule: a new key is trusted only through a statement
//    of the old one). A unit that trusts the old key accepts the new one
//    and stops trusting the old; statements are walked in order, so a
//    unit several rotations behind catches up.
// Trusted comments are `key:value` fields separated by tabs, as minisign's
// own ("timestamp:... file:..."), so `minisign -V` prints them readably.
import { Rtr7Error } from "../errors.js";
import { parseManifest, type Manifest } from "../wire/manifest.js";
import {
  formatPublicKey,
  parsePublicKey,
  signMessage,
  verifyMessage,
  type PublicKey,
  type SigningKey,
} from "./minisign.js";

/** The signature beside a release's manifest.json. */
export const manifestSignatureFile = "manifest.json.minisig";

export interface ReleaseSignatureFacts {
  version: string;
  /** "fleet" for a release every unit takes, else "host:NAME". */
  kind: string;
  /** When it was signed (ms since the epoch): orders releases. */
  signedAtMs: number;
}

export interface VerifiedRelease extends ReleaseSignatureFacts {
  manifest: Manifest;
  keyId: string;
}

export interface RotationStatement {
  /** The new key's public key file. */
  publicKey: string;
  /** Its .minisig, by the key it replaces. */
  signature: string;
}

export interface VerifiedRotation {
  newKey: PublicKey;
  /** The key that signed the statement and is replaced. */
  replaces: string;
  signedAtMs: number;
}

function fieldsOf(comment: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const part of comment.split("\t")) {
    const colon = part.indexOf(":");
    if (colon > 0) fields.set(part.slice(0, colon), part.slice(colon + 1));
  }
  return fields;
}

export function releaseKind(manifest: Pick<Manifest, "anyUnit" | "hostname">): string {
  return manifest.anyUnit === true || manifest.hostname === undefined ? "fleet" : `host:${manifest.hostname}`;
}

/** Signs manifest.json's bytes; returns the .minisig text. */
export function signManifest(manifestBytes: Buffer, key: SigningKey, signedAtMs: number): string {
  const manifest = parseManifest(JSON.parse(manifestBytes.toString("utf8")));
  const version = manifest.version ?? "";
  if (version === "" || /\s/.test(version))
    throw new Rtr7Error(
      "RTR7_ERR_MANIFEST",
      `sign manifest.json: its version ${JSON.stringify(version)} is empty or has white space`,
    );
  const trusted = [
    `timestamp:${Math.floor(signedAtMs / 1000)}`,
    "file:manifest.json",
    "hashed",
    `rtr7-release:${version}`,
    `kind:${releaseKind(manifest)}`,
    `signed-ms:${signedAtMs}`,
  ].join("\t");
  return signMessage(manifestBytes, key, {
    trusted,
    untrusted: `rtr7 release ${version}, signed by key ${key.publicKey.keyId}`,
  });
}

/**
 * Checks a release's manifest.json bytes against its signature and the
 * trusted keys, and that the signed comment says what the manifest says
 * (version and kind). Throws RTR7_ERR_SIGNATURE naming the check that failed.
 */
export function verifyManifest(
  manifestBytes: Buffer,
  signatureText: string,
  trusted: readonly PublicKey[],
  where = "manifest.json",
): VerifiedRelease {
  const verified = verifyMessage(manifestBytes, signatureText, trusted, where);
  let manifest: Manifest;
  try {
    manifest = parseManifest(JSON.parse(manifestBytes.toString("utf8")));
  } catch (error) {
    throw new Rtr7Error(
      "RTR7_ERR_SIGNATURE",
      `${where}: signed, but not a manifest (${(error as Error).message})`,
    );
  }
  const fields = fieldsOf(verified.trustedComment);
  const version = fields.get("rtr7-release");
  const kind = fields.get("kind");
  const signedAtMs = Number(fields.get("signed-ms"));
  if (version === undefined || kind === undefined || !Number.isSafeInteger(signedAtMs))
    throw new Rtr7Error(
      "RTR7_ERR_SIGNATURE",
      `${where}: the signature by key ${verified.keyId} is not a release signature (its trusted comment ${JSON.stringify(verified.trustedComment)} names no rtr7-release, kind and signed-ms)`,
    );
  if (version !== manifest.version || kind !== releaseKind(manifest))
    throw new Rtr7Error(
      "RTR7_ERR_SIGNATURE",
      `${where}: the signature is for release ${version} (${kind}), but the manifest says ${manifest.version ?? "no version"} (${releaseKind(manifest)})`,
    );
  return { manifest, keyId: verified.keyId, version, kind, signedAtMs };
}

/** The statement, signed by `oldKey`, that `newKey` replaces it. */
export function signRotation(newKey: PublicKey, oldKey: SigningKey, signedAtMs: number): RotationStatement {
  const publicKey = formatPublicKey(newKey);
  const trusted = [
    `timestamp:${Math.floor(signedAtMs / 1000)}`,
    `rtr7-rotation:${newKey.keyId}`,
    `replaces:${oldKey.publicKey.keyId}`,
    `signed-ms:${signedAtMs}`,
  ].join("\t");
  const signature = signMessage(Buffer.from(publicKey), oldKey, {
    trusted,
    untrusted: `rtr7 key rotation: ${oldKey.publicKey.keyId} introduces ${newKey.keyId}`,
  });
  return { publicKey, signature };
}

/** Checks a rotation statement against the trusted keys; RTR7_ERR_SIGNATURE when it does not hold. */
export function verifyRotation(
  statement: RotationStatement,
  trusted: readonly PublicKey[],
  where = "the key rotation statement",
): VerifiedRotation {
  const newKey = parsePublicKey(statement.publicKey, `${where}'s new key`);
  const verified = verifyMessage(Buffer.from(statement.publicKey), statement.signature, trusted, where);
  const fields = fieldsOf(verified.trustedComment);
  const signedAtMs = Number(fields.get("signed-ms"));
  if (
    fields.get("rtr7-rotation") !== newKey.keyId ||
    fields.get("replaces") !== verified.keyId ||
    !Number.isSafeInteger(signedAtMs)
  )
    throw new Rtr7Error(
      "RTR7_ERR_SIGNATURE",
      `${where}: the signature by key ${verified.keyId} does not introduce key ${newKey.keyId} (trusted comment ${JSON.stringify(verified.trustedComment)})`,
    );
  return { newKey, replaces: verified.keyId, signedAtMs };
}
