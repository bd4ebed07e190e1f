// The TLS identity of `rtr7 fleet serve`: the key and self-signed
// certificate its broker (and its HTTPS release store) present, kept in
// DATA/tls/ (key.pem 0600, cert.pem). Units do not check names or a CA:
// `rtr7 fleet enroll` writes the certificate's SHA-256 fingerprint into the
// unit's uplink.json and the unit pins it, so the certificate's one job is
// to stay the same across restarts. It is made the way a unit's is
// (lib/tls/unit-certificate.ts: ECDSA P-256, 20 years, SAN HOST and
// HOST.local); a pair that is missing, damaged or mismatched is made anew,
// and the caller is told, since every enrolled unit then refuses the server
// until it is enrolled again. An external mosquitto can use the same files
// (its cafile is the certificate itself).
import { X509Certificate, createPrivateKey } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomically } from "../../../lib/atomic-file.js";
import { describeError } from "../../../lib/errors.js";
import { makeUnitCertificate, type UnitCertificate } from "../../../lib/tls/unit-certificate.js";

export interface ServerCertificate extends UnitCertificate {
  keyFile: string;
  certFile: string;
  /** True when this call made the pair. */
  created: boolean;
  /** Why the pair that was there was not used, when one was replaced. */
  replaced?: string;
}

export function serverCertificatePaths(dataDir: string): { dir: string; key: string; cert: string } {
  const dir = path.join(dataDir, "tls");
  return { dir, key: path.join(dir, "key.pem"), cert: path.join(dir, "cert.pem") };
}

/** DATA/tls/'s pair, made (for `hostname`, the name units reach the server by) when it is missing or damaged. */
export async function ensureServerCertificate(dataDir: string, hostname: string): Promise<ServerCertificate> {
  const files = serverCertificatePaths(dataDir);
  let problem: string | undefined;
  try {
    const [key, cert] = await Promise.all([readFile(files.key, "utf8"), readFile(files.cert, "utf8")]);
    const parsed = new X509Certificate(cert);
    if (parsed.checkPrivateKey(createPrivateKey(key)))
      return {
        key,
        cert,
        fingerprint256: parsed.fingerprint256,
        keyFile: files.key,
        certFile: files.cert,
        created: false,
      };
    problem = `${files.cert} is not the certificate of ${files.key}`;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") problem = describeError(error);
  }
  const made = await makeUnitCertificate(hostname);
  await writeFileAtomically(files.key, made.key, { mode: 0o600, makeDirectory: true });
  await writeFileAtomically(files.cert, made.cert, { mode: 0o644 });
  return {
    ...made,
    keyFile: files.key,
    certFile: files.cert,
    created: true,
    ...(problem === undefined ? {} : { replaced: problem }),
  };
}
