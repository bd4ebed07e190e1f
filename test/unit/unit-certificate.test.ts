// lib/tls/unit-certificate.ts: the unit's key and certificate are made once
// on /perm and kept, remade when missing, damaged or not a pair, with
// openssl's own fingerprint; and router/http-guard/serve.ts serves the same
// app over HTTPS with it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFile, stat, writeFile, unlink } from "node:fs/promises";
import { promisify } from "node:util";
import {
  certificateFingerprint,
  ensureUnitCertificate,
  sameFingerprint,
  unitCertificatePaths,
} from "../../lib/tls/unit-certificate.js";
import { scratchDir } from "../helpers/scratch.js";

const run = promisify(execFile);

test("the pair is made once (key 0600), kept by the next call, and names the hostname", async (t) => {
  const perm = await scratchDir(t, "tls");
  const started = performance.now();
  const made = await ensureUnitCertificate(perm, "router7");
  t.diagnostic(`made in ${(performance.now() - started).toFixed(0)} ms`);
  assert.equal(made.created, true);
  assert.equal(made.replaced, undefined);
  const files = unitCertificatePaths(perm);
  assert.equal((await stat(files.key)).mode & 0o777, 0o600);
  assert.equal(await readFile(files.cert, "utf8"), made.cert);
  const cert = new X509Certificate(made.cert);
  assert.match(cert.subject, /CN=router7/);
  assert.equal(cert.subjectAltName, "DNS:router7, DNS:router7.local");
  assert.equal(cert.publicKey.asymmetricKeyType, "ec");
  assert.ok(new Date(cert.validTo).getFullYear() - new Date().getFullYear() >= 19);
  assert.equal(cert.checkPrivateKey((await import("node:crypto")).createPrivateKey(made.key)), true);

  const again = await ensureUnitCertificate(perm, "router7");
  assert.equal(again.created, false);
  assert.equal(again.fingerprint256, made.fingerprint256);
  assert.equal(await readFile(files.key, "utf8"), made.key);
});

test("the fingerprint is what openssl x509 -fingerprint -sha256 prints", async (t) => {
  const perm = await scratchDir(t, "tls");
  const made = await ensureUnitCertificate(perm, "lab1");
  let stdout: string;
  try {
    ({ stdout } = await run("openssl", [
      "x509",
      "-noout",
      "-fingerprint",
      "-sha256",
      "-in",
      unitCertificatePaths(perm).cert,
    ]));
  } catch (error) {
    t.skip(`openssl does not run: ${(error as Error).message}`);
    return;
  }
  const printed = stdout.trim().split("=").pop() ?? "";
  assert.equal(printed, made.fingerprint256);
  assert.equal(certificateFingerprint(made.cert), made.fingerprint256);
  assert.ok(sameFingerprint(printed.toLowerCase().replace(/:/g, ""), made.fingerprint256));
});

test("a missing, damaged or mismatched pair is made anew, and says why", async (t) => {
  const perm = await scratchDir(t, "tls");
  const files = unitCertificatePaths(perm);
  const first = await ensureUnitCertificate(perm, "lab1");

  await writeFile(files.cert, "not a certificate\n");
  const damaged = await ensureUnitCertificate(perm, "lab1");
  assert.equal(damaged.created, true);
  assert.match(damaged.replaced ?? "", /no usable pair/);
  assert.notEqual(damaged.fingerprint256, first.fingerprint256);

  // A cut between the key's write and the certificate's: another pair's certificate.
  const other = await scratchDir(t, "tls-other");
  await writeFile(files.cert, (await ensureUnitCertificate(other, "lab1")).cert);
  const mismatched = await ensureUnitCertificate(perm, "lab1");
  assert.equal(mismatched.created, true);
  assert.match(mismatched.replaced ?? "", /is not the certificate of/);

  await unlink(files.key);
  const missing = await ensureUnitCertificate(perm, "lab1");
  assert.equal(missing.created, true);
  assert.equal(missing.replaced, undefined);
  assert.equal((await ensureUnitCertificate(perm, "lab1")).fingerprint256, missing.fingerprint256);
});
