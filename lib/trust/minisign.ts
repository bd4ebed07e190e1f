// Ed25519 signatures in minisign's file formats, so that anyone can check
// what rtr7 signed with Debian's `minisign -V` and no rtr7 at all:
//   public key  "untrusted comment: ...\n" + base64("Ed" ‖ key id (8) ‖ key (32))
//   signature   "untrusted comment: ...\n" + base64("ED" ‖ key id (8) ‖ sig (64)) + "\n"
//               "trusted comment: TEXT\n" + base64(global sig (64))
// "ED" signs BLAKE2b-512 of the message (minisign's default since 0.8; the
// legacy "Ed" signs the message itself and is accepted when verifying); the
// global signature signs sig ‖ TEXT, so the trusted comment cannot be
// changed without the key. Written here rather than taken from a library:
// node:crypto has Ed25519 and BLAKE2b-512, the formats are a few fixed
// byte layouts, and the npm ports of minisign are unmaintained.
//
// The secret key is not in minisign's format (that one needs a BLAKE2b-256
// checksum, which node:crypto does not offer): it is a PKCS#8 PEM, and the
// key id is the first 8 bytes of BLAKE2b-512 of the public key, so the id
// can never disagree with the key it names.
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from "node:crypto";
import { Rtr7Error } from "../errors.js";

export interface PublicKey {
  /** 16 upper-case hex digits, as minisign prints a key id. */
  keyId: string;
  /** The key id as it is stored in the files (8 bytes). */
  keyIdBytes: Buffer;
  /** The raw Ed25519 public key (32 bytes). */
  raw: Buffer;
  key: KeyObject;
}

export interface SigningKey {
  publicKey: PublicKey;
  privateKey: KeyObject;
}

export interface Signature {
  /** "ED": BLAKE2b-512 of the message is signed; "Ed": the message itself (legacy). */
  algorithm: "ED" | "Ed";
  keyId: string;
  keyIdBytes: Buffer;
  signature: Buffer;
  trustedComment: string;
  globalSignature: Buffer;
}

export interface Verified {
  /** The key that signed, one of the trusted ones. */
  keyId: string;
  trustedComment: string;
}

const untrustedPrefix = "untrusted comment: ";
const trustedPrefix = "trusted comment: ";

/** minisign prints the little-endian 64-bit key number as 16 hex digits. */
function keyIdText(bytes: Buffer): string {
  return Buffer.from(bytes).reverse().toString("hex").toUpperCase();
}

function publicKeyFromRaw(raw: Buffer): PublicKey {
  const keyIdBytes = createHash("blake2b512").update(raw).digest().subarray(0, 8);
  const key = createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") },
    format: "jwk",
  });
  return { keyId: keyIdText(keyIdBytes), keyIdBytes, raw, key };
}

function rawOf(key: KeyObject): Buffer {
  const jwk = key.export({ format: "jwk" });
  if (typeof jwk.x !== "string") throw new Error("not an Ed25519 key");
  return Buffer.from(jwk.x, "base64url");
}

export function generateSigningKey(): SigningKey {
  const pair = generateKeyPairSync("ed25519");
  return { privateKey: pair.privateKey, publicKey: publicKeyFromRaw(rawOf(pair.publicKey)) };
}

/** The public key file, as `minisign -G` writes it. */
export function formatPublicKey(publicKey: PublicKey): string {
  const body = Buffer.concat([Buffer.from("Ed"), publicKey.keyIdBytes, publicKey.raw]);
  return `${untrustedPrefix}minisign public key ${publicKey.keyId}\n${body.toString("base64")}\n`;
}

function keyError(where: string, why: string): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_KEY", `${where}: ${why}`);
}

/** Lines of a file, without a trailing empty one; \r\n tolerated. */
function linesOf(text: string): string[] {
  return text.replace(/\r\n/g, "\n").replace(/\n+$/, "").split("\n");
}

function base64Exact(text: string, bytes: number): Buffer | undefined {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed)) return undefined;
  const decoded = Buffer.from(trimmed, "base64");
  return decoded.length === bytes ? decoded : undefined;
}

/**
 * A minisign public key: the file (an untrusted comment line, then the key)
 * or just its base64 line. `where` names it in errors (a path, "the unit's
 * trusted key").
 */
export function parsePublicKey(text: string, where: string): PublicKey {
  const lines = linesOf(text);
  const keyLine = lines.length === 1 ? lines[0] : lines[1];
  if (lines.length > 2 || (lines.length === 2 && !lines[0]?.startsWith(untrustedPrefix)))
    throw keyError(where, "not a minisign public key (want an untrusted comment line, then the key)");
  const body = base64Exact(keyLine ?? "", 42);
  if (!body) throw keyError(where, "not a minisign public key (want 42 bytes of base64 after the comment)");
  if (body.subarray(0, 2).toString("latin1") !== "Ed")
    throw keyError(
      where,
      `an unknown key algorithm ${JSON.stringify(body.subarray(0, 2).toString("latin1"))} (want Ed)`,
    );
  const raw = body.subarray(10, 42);
  const publicKey = publicKeyFromRaw(Buffer.from(raw));
  const storedId = keyIdText(body.subarray(2, 10));
  // A key made by minisign itself has a random id: keep it, so its signatures match.
  return storedId === publicKey.keyId
    ? publicKey
    : { ...publicKey, keyId: storedId, keyIdBytes: Buffer.from(body.subarray(2, 10)) };
}

/** The secret key file: a comment line, then PKCS#8 PEM. Keep it 0600. */
export function formatSecretKey(key: SigningKey, comment: string): string {
  const pem = key.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  return `${comment.replace(/\n/g, " ")}\n${pem}`;
}

export function parseSecretKey(text: string, where: string): SigningKey {
  const begin = text.indexOf("-----BEGIN PRIVATE KEY-----");
  let privateKey: KeyObject;
  try {
    if (begin < 0) throw new Error("no PEM private key in it");
    privateKey = createPrivateKey({ key: text.slice(begin), format: "pem" });
  } catch (error) {
    throw keyError(where, `not an rtr7 secret key (${(error as Error).message})`);
  }
  if (privateKey.asymmetricKeyType !== "ed25519")
    throw keyError(where, `a ${privateKey.asymmetricKeyType ?? "?"} key; want Ed25519`);
  return { privateKey, publicKey: publicKeyFromRaw(rawOf(createPublicKey(privateKey))) };
}

function blake2b(message: Buffer): Buffer {
  return createHash("blake2b512").update(message).digest();
}

/** A .minisig for `message`; the trusted comment is signed with it (one line). */
export function signMessage(
  message: Buffer,
  key: SigningKey,
  comments: { trusted: string; untrusted?: string },
): string {
  if (/[\r\n]/.test(comments.trusted)) throw new Error("a trusted comment is one line");
  const signature = sign(null, blake2b(message), key.privateKey);
  const globalSignature = sign(
    null,
    Buffer.concat([signature, Buffer.from(comments.trusted, "utf8")]),
    key.privateKey,
  );
  const body = Buffer.concat([Buffer.from("ED"), key.publicKey.keyIdBytes, signature]);
  const untrusted = (comments.untrusted ?? `signature from rtr7 key ${key.publicKey.keyId}`).replace(
    /\n/g,
    " ",
  );
  return (
    `${untrustedPrefix}${untrusted}\n${body.toString("base64")}\n` +
    `${trustedPrefix}${comments.trusted}\n${globalSignature.toString("base64")}\n`
  );
}

function signatureError(where: string, why: string, hint?: string): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_SIGNATURE", `${where}: ${why}`, hint ? { hint } : {});
}

/** The four lines of a .minisig; RTR7_ERR_SIGNATURE when they are not one. */
export function parseSignature(text: string, where: string): Signature {
  const lines = linesOf(text);
  const [untrusted, bodyLine, trusted, globalLine] = lines;
  if (lines.length !== 4 || !untrusted?.startsWith(untrustedPrefix) || !trusted?.startsWith(trustedPrefix))
    throw signatureError(
      where,
      "not a minisign signature (want 4 lines: untrusted comment, signature, trusted comment, global signature)",
    );
  const body = base64Exact(bodyLine ?? "", 74);
  const globalSignature = base64Exact(globalLine ?? "", 64);
  if (!body || !globalSignature)
    throw signatureError(where, "not a minisign signature (its base64 lines are not 74 and 64 bytes)");
  const algorithm = body.subarray(0, 2).toString("latin1");
  if (algorithm !== "ED" && algorithm !== "Ed")
    throw signatureError(
      where,
      `an unknown signature algorithm ${JSON.stringify(algorithm)} (want ED or Ed)`,
    );
  const keyIdBytes = Buffer.from(body.subarray(2, 10));
  return {
    algorithm,
    keyId: keyIdText(keyIdBytes),
    keyIdBytes,
    signature: Buffer.from(body.subarray(10, 74)),
    trustedComment: (trusted ?? "").slice(trustedPrefix.length),
    globalSignature,
  };
}

/**
 * Checks `signature` (a .minisig's text) over `message` against the trusted
 * keys; returns the key that signed and the trusted comment. Throws
 * RTR7_ERR_SIGNATURE saying which check failed: no trusted key has the
 * signature's key id, the signature does not match the message, or the
 * trusted comment was changed.
 */
export function verifyMessage(
  message: Buffer,
  signatureText: string,
  trusted: readonly PublicKey[],
  where: string,
): Verified {
  const parsed = parseSignature(signatureText, where);
  const key = trusted.find((candidate) => candidate.keyIdBytes.equals(parsed.keyIdBytes));
  if (!key)
    throw signatureError(
      where,
      `signed by key ${parsed.keyId}, which is not trusted here (trusted: ${trusted.map((k) => k.keyId).join(", ") || "none"})`,
      "Sign with the fleet's key (`rtr7 keys show` names it), or introduce the new key with `rtr7 keys rotate`, whose statement the old key signs.",
    );
  const signed = parsed.algorithm === "ED" ? blake2b(message) : message;
  if (!verify(null, signed, key.key, parsed.signature))
    throw signatureError(
      where,
      `the signature by key ${key.keyId} does not match the signed file: it was changed after signing, or the signature belongs to another file`,
      "Rebuild the release (or re-sign it with `rtr7 keys sign DIR`) and send the files unchanged.",
    );
  const global = Buffer.concat([parsed.signature, Buffer.from(parsed.trustedComment, "utf8")]);
  if (!verify(null, global, key.key, parsed.globalSignature))
    throw signatureError(
      where,
      `the trusted comment of the signature by key ${key.keyId} was changed after signing`,
      "Rebuild the release (or re-sign it with `rtr7 keys sign DIR`) and send the files unchanged.",
    );
  return { keyId: key.keyId, trustedComment: parsed.trustedComment };
}
