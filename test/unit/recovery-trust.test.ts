// What the recovery server gives a unit to check a signed release with: a
// signed release's manifest.json byte for byte with manifest.json.minisig
// beside it (refused before serving when the images changed after signing),
// and GET /trusted-keys, the workstation's public key behind the token and
// the unit's address, read from signing.pub alone. The unit's check is the
// signing engineer's verifyManifest over exactly what was served.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { buildRecoveryHttp } from "../../server/http/recovery-http.js";
import { signedManifest } from "../../server/signed-manifest.js";
import { workstationPublicKeys } from "../../server/workstation-keys.js";
import { afterAck, initialAccessState, mayFetch } from "../../server/pxe/unit-access.js";
import { FileMap, fileFromBuffer } from "../../lib/served-files.js";
import { silentLogger } from "../../lib/log.js";
import { isRtr7Error } from "../../lib/errors.js";
import { parsePublicKey } from "../../lib/trust/minisign.js";
import { manifestSignatureFile, signManifest, verifyManifest } from "../../lib/trust/release-signature.js";
import { initKeys, loadSigningKey } from "../../updates/keys.js";

const root = { name: "root.img", size: 3, sha256: "a".repeat(64) };

async function scratch(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "rtr7-recovery-trust-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test("a signed release: its manifest's exact bytes and signature; a changed image is refused", async (t) => {
  const dir = await scratch(t);
  const keys = path.join(dir, "keys");
  await initKeys(keys);
  const key = await loadSigningKey(keys);
  assert.ok(key);
  const bytes = Buffer.from(`${JSON.stringify({ version: "v1", anyUnit: true, images: [root] }, null, 2)}\n`);
  const manifestPath = path.join(dir, "manifest.json");
  await writeFile(manifestPath, bytes);
  assert.equal(await signedManifest(manifestPath, [root]), undefined, "no signature, nothing signed");
  await writeFile(path.join(dir, manifestSignatureFile), signManifest(bytes, key, 1_700_000_000_000));
  const signed = await signedManifest(manifestPath, [root]);
  assert.ok(signed);
  assert.ok(signed.bytes.equals(bytes));
  await assert.rejects(
    signedManifest(manifestPath, [{ ...root, sha256: "b".repeat(64) }]),
    (error) =>
      isRtr7Error(error, "RTR7_ERR_MANIFEST") && /root\.img is 3 bytes, sha256 a+ there/.test(error.message),
  );

  const unit = "10.0.0.1";
  const state = afterAck(initialAccessState(), { mac: "52:54:00:00:00:01", address: unit });
  const token = "e".repeat(32);
  const { app } = buildRecoveryHttp({
    files: new FileMap([fileFromBuffer(manifestSignatureFile, signed.signature)]),
    manifest: { anyUnit: true, images: [root] },
    manifestBytes: signed.bytes,
    token,
    log: silentLogger(),
    trustedKeys: () => workstationPublicKeys(keys),
    refuse: (peerAddress, resource) => {
      const decision = mayFetch(state, { peerAddress, resource });
      return decision.allowed ? undefined : decision.reason;
    },
  });
  t.after(() => app.close());
  const auth = { authorization: `Bearer ${token}` };
  const manifest = await app.inject({ url: "/manifest.json", remoteAddress: unit });
  assert.equal(manifest.statusCode, 200);
  assert.match(String(manifest.headers["content-type"]), /^application\/json/);
  assert.ok(manifest.rawPayload.equals(bytes), "manifest.json is not the signed bytes");
  const signature = await app.inject({ url: `/${manifestSignatureFile}`, remoteAddress: unit });
  assert.equal(signature.body, signed.signature);

  assert.equal((await app.inject({ url: "/trusted-keys", remoteAddress: unit })).statusCode, 403);
  const other = await app.inject({ url: "/trusted-keys", remoteAddress: "10.0.0.9", headers: auth });
  assert.equal((JSON.parse(other.body) as { code: string }).code, "RTR7_ERR_RECOVERY_PEER");
  const given = await app.inject({ url: "/trusted-keys", remoteAddress: unit, headers: auth });
  assert.equal(given.statusCode, 200);
  assert.equal(given.headers["cache-control"], "no-store");
  const { keys: texts } = JSON.parse(given.body) as { keys: string[] };
  assert.equal(texts.length, 1);
  assert.doesNotMatch(given.body, /PRIVATE/);
  const trusted = texts.map((text) => parsePublicKey(text, "GET /trusted-keys"));
  assert.equal(trusted[0]?.keyId, key.publicKey.keyId);
  const verified = verifyManifest(manifest.rawPayload, signature.body, trusted);
  assert.equal(verified.version, "v1");
});

test("no key on the workstation: /trusted-keys gives none; signing.key is never read", async (t) => {
  const dir = await scratch(t);
  assert.deepEqual(await workstationPublicKeys(path.join(dir, "absent")), []);
  const keys = path.join(dir, "keys");
  await initKeys(keys);
  await writeFile(path.join(keys, "signing.key"), "not a key at all");
  assert.equal((await workstationPublicKeys(keys)).length, 1);
});
