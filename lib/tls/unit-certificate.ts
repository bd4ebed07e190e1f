// The unit's TLS identity: an ECDSA P-256 key and a self-signed X.509
// certificate for its hostname (CN, and SAN HOST and HOST.local), kept in
// /perm/rtr7/tls/ (key.pem 0600, cert.pem) so it survives updates and
// recoveries, which never format /perm. The workstation does not check
// names or a CA: it pins the certificate's SHA-256 fingerprint (what
// `openssl x509 -fingerprint -sha256` prints, node's fingerprint256) on
// first contact or from `rtr7 recover`, so the certificate's one job is to
// stay the same. The unit's suite makes it at first boot and recovery-init
// right after /perm is restored (a pair a backup brought is kept).
//
// The key comes from node's webcrypto, the certificate from @peculiar/x509
// (no ASN.1 by hand); P-256 rather than RSA because a QEMU unit under
// software emulation makes it in milliseconds. Each file is written
// atomically (lib/atomic-file.ts), the key first; a pair that is missing,
// unreadable, not PEM, or whose certificate is not the key's (a cut between
// the two writes) is made anew, and the caller is told so it can log it.
import "reflect-metadata";
import { KeyObject, X509Certificate, createPrivateKey, randomBytes, webcrypto } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomically } from "../atomic-file.js";
import { describeError } from "../errors.js";

/** Where the pair lives under /perm. */
export const tlsDirectoryName = path.join("rtr7", "tls");
export const keyFileName = "key.pem";
export const certFileName = "cert.pem";

/** How long a unit's certificate is valid: a pin, not an expiry, is what the workstation checks. */
export const certificateValidityYears = 20;

export interface UnitCertificate {
  /** PKCS#8 PEM. */
  key: string;
  /** The certificate, PEM. */
  cert: string;
  /** "AB:CD:..." (SHA-256 of the DER, upper-case hex pairs). */
  fingerprint256: string;
}

export interface EnsuredCertificate extends UnitCertificate {
  /** True when this call made the pair. */
  created: boolean;
  /** Why an existing pair was not used (damaged, mismatched), when it was made anew over one. */
  replaced?: string;
}

export function unitCertificatePaths(permDir: string): { dir: string; key: string; cert: string } {
  const dir = path.join(permDir, tlsDirectoryName);
  return { dir, key: path.join(dir, keyFileName), cert: path.join(dir, certFileName) };
}

/** The SHA-256 fingerprint of a PEM certificate, as openssl prints it. */
export function certificateFingerprint(certPem: string): string {
  return new X509Certificate(certPem).fingerprint256;
}

/** Two fingerprints name the same certificate (case and separators aside). */
export function sameFingerprint(a: string, b: string): boolean {
  const plain = (text: string): string => text.replace(/[^0-9a-f]/gi, "").toLowerCase();
  return plain(a) === plain(b);
}

/** The pair on /perm when it is whole and matching; else why not (ENOENT: "missing"). */
export async function readUnitCertificate(
  permDir: string,
): Promise<{ pair: UnitCertificate } | { problem: string; missing: boolean }> {
  const files = unitCertificatePaths(permDir);
  let key: string;
  let cert: string;
  try {
    [key, cert] = await Promise.all([readFile(files.key, "utf8"), readFile(files.cert, "utf8")]);
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === "ENOENT";
    return { problem: missing ? "missing" : describeError(error), missing };
  }
  try {
    const parsed = new X509Certificate(cert);
    if (!parsed.checkPrivateKey(createPrivateKey(key)))
      return { problem: `${files.cert} is not the certificate of ${files.key}`, missing: false };
    return { pair: { key, cert, fingerprint256: parsed.fingerprint256 } };
  } catch (error) {
    return { problem: `${files.dir} holds no usable pair: ${describeError(error)}`, missing: false };
  }
}

/** A new key and self-signed certificate for `hostname`, valid from `now` for 20 years. */
export async function makeUnitCertificate(hostname: string, now = new Date()): Promise<UnitCertificate> {
  const x509 = await import("@peculiar/x509");
  x509.cryptoProvider.set(webcrypto);
  const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ["sign", "verify"]);
  const notAfter = new Date(now);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + certificateValidityYears);
  // Serial numbers are positive: the first bit clear.
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString("hex"),
    name: [{ CN: [hostname] }],
    notBefore: now,
    notAfter,
    keys,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: "dns", value: hostname },
        { type: "dns", value: `${hostname}.local` },
      ]),
    ],
  });
  const key = KeyObject.from(keys.privateKey).export({ type: "pkcs8", format: "pem" }).toString();
  const cert = certificate.toString("pem") + "\n";
  return { key, cert, fingerprint256: certificateFingerprint(cert) };
}

/**
 * The unit's pair from /perm, made (and written) when there is none or it
 * is damaged. Several processes may call it (the suite first, at boot, so
 * the services find it made).
 */
export async function ensureUnitCertificate(
  permDir: string,
  hostname: string,
  now = new Date(),
): Promise<EnsuredCertificate> {
  const found = await readUnitCertificate(permDir);
  if ("pair" in found) return { ...found.pair, created: false };
  const made = await makeUnitCertificate(hostname, now);
  const files = unitCertificatePaths(permDir);
  await writeFileAtomically(files.key, made.key, { mode: 0o600, makeDirectory: true });
  await writeFileAtomically(files.cert, made.cert, { mode: 0o644 });
  return { ...made, created: true, ...(found.missing ? {} : { replaced: found.problem }) };
}
