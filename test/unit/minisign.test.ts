// lib/trust/: minisign's formats both ways. What rtr7 signs, Debian's
// `minisign -V` verifies with rtr7's public key file; what minisign itself
// signs (legacy and prehashed), rtr7 verifies; and every kind of tampering
// is refused with the check that failed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { isRtr7Error } from "../../lib/errors.js";
import { haveTool } from "../../lab/processes.js";
import {
  formatPublicKey,
  formatSecretKey,
  generateSigningKey,
  parsePublicKey,
  parseSecretKey,
  verifyMessage,
} from "../../lib/trust/minisign.js";
import {
  signManifest,
  signRotation,
  verifyManifest,
  verifyRotation,
} from "../../lib/trust/release-signature.js";
import { scratchDir } from "../helpers/scratch.js";

const execFileAsync = promisify(execFile);
const skipMinisign = (await haveTool("minisign")) ? false : "needs minisign (Debian's): run scripts/setup.sh";

const manifestText = (version: string, rootSha = "a".repeat(64)): Buffer =>
  Buffer.from(
    `${JSON.stringify({ anyUnit: true, version, images: [{ name: "root.img", size: 3, sha256: rootSha }] }, null, 2)}\n`,
  );

const signatureCode = (error: unknown): boolean => isRtr7Error(error, "RTR7_ERR_SIGNATURE");

test("keys round-trip through their files; the key id is the public key's", () => {
  const key = generateSigningKey();
  const publicKey = parsePublicKey(formatPublicKey(key.publicKey), "pub");
  assert.equal(publicKey.keyId, key.publicKey.keyId);
  assert.match(publicKey.keyId, /^[0-9A-F]{16}$/);
  const again = parseSecretKey(formatSecretKey(key, "rtr7 fleet key"), "key");
  assert.equal(again.publicKey.keyId, key.publicKey.keyId);
  assert.throws(
    () => parsePublicKey("untrusted comment: x\nnot base64!\n", "pub"),
    /not a minisign public key/,
  );
  assert.throws(
    () => parseSecretKey("nothing", "key"),
    (error) => isRtr7Error(error, "RTR7_ERR_KEY"),
  );
});

test("a signed manifest verifies; another key, an edit, a changed trusted comment are each refused", () => {
  const key = generateSigningKey();
  const other = generateSigningKey();
  const manifest = manifestText("v2");
  const signature = signManifest(manifest, key, 1_764_870_000_123);
  const verified = verifyManifest(manifest, signature, [key.publicKey]);
  assert.deepEqual(
    {
      version: verified.version,
      kind: verified.kind,
      signedAtMs: verified.signedAtMs,
      keyId: verified.keyId,
    },
    { version: "v2", kind: "fleet", signedAtMs: 1_764_870_000_123, keyId: key.publicKey.keyId },
  );
  assert.throws(
    () => verifyManifest(manifest, signature, [other.publicKey]),
    (error) => signatureCode(error) && /not trusted here/.test((error as Error).message),
  );
  assert.throws(
    () => verifyManifest(manifestText("v2", "b".repeat(64)), signature, [key.publicKey]),
    (error) => signatureCode(error) && /changed after signing/.test((error as Error).message),
  );
  const lines = signature.split("\n");
  lines[2] = lines[2]!.replace("rtr7-release:v2", "rtr7-release:v9");
  assert.throws(
    () => verifyManifest(manifest, lines.join("\n"), [key.publicKey]),
    (error) => signatureCode(error) && /trusted comment .* was changed/.test((error as Error).message),
  );
  assert.throws(() => verifyManifest(manifest, "garbage", [key.publicKey]), signatureCode);
});

test("a rotation statement introduces the new key only when a trusted key signed it", () => {
  const oldKey = generateSigningKey();
  const newKey = generateSigningKey();
  const stranger = generateSigningKey();
  const statement = signRotation(newKey.publicKey, oldKey, 1000);
  const verified = verifyRotation(statement, [oldKey.publicKey]);
  assert.equal(verified.newKey.keyId, newKey.publicKey.keyId);
  assert.equal(verified.replaces, oldKey.publicKey.keyId);
  assert.throws(
    () => verifyRotation(signRotation(newKey.publicKey, stranger, 1000), [oldKey.publicKey]),
    signatureCode,
  );
  // The statement's key swapped for another: the signature no longer matches.
  const swapped = { ...statement, publicKey: formatPublicKey(stranger.publicKey) };
  assert.throws(() => verifyRotation(swapped, [oldKey.publicKey]), signatureCode);
});

test(
  "Debian's minisign -V verifies what rtr7 signed, with rtr7's public key file",
  { skip: skipMinisign },
  async (t) => {
    const dir = await scratchDir(t, "minisign");
    const key = generateSigningKey();
    const manifest = path.join(dir, "manifest.json");
    await writeFile(manifest, manifestText("2026.12.4"));
    await writeFile(`${manifest}.minisig`, signManifest(await readFile(manifest), key, Date.now()));
    await writeFile(path.join(dir, "rtr7.pub"), formatPublicKey(key.publicKey));
    const { stdout } = await execFileAsync("minisign", [
      "-V",
      "-m",
      manifest,
      "-p",
      path.join(dir, "rtr7.pub"),
    ]);
    assert.match(stdout, /Signature and comment signature verified/);
    assert.match(stdout, /rtr7-release:2026\.12\.4/);
    // And it refuses the same signature over an edited manifest.
    await writeFile(manifest, manifestText("2026.12.5"));
    await assert.rejects(execFileAsync("minisign", ["-V", "-m", manifest, "-p", path.join(dir, "rtr7.pub")]));
  },
);

test("rtr7 verifies what minisign signed, prehashed and legacy", { skip: skipMinisign }, async (t) => {
  const dir = await scratchDir(t, "minisign");
  const pub = path.join(dir, "m.pub");
  const sec = path.join(dir, "m.key");
  await execFileAsync("minisign", ["-G", "-W", "-p", pub, "-s", sec]);
  const file = path.join(dir, "data");
  await writeFile(file, "some release bytes\n");
  const trusted = [parsePublicKey(await readFile(pub, "utf8"), pub)];
  for (const legacy of [false, true]) {
    await execFileAsync("minisign", [
      "-S",
      ...(legacy ? ["-l"] : []),
      "-s",
      sec,
      "-m",
      file,
      "-t",
      "made by minisign",
    ]);
    const verified = verifyMessage(
      await readFile(file),
      await readFile(`${file}.minisig`, "utf8"),
      trusted,
      "data",
    );
    assert.equal(verified.trustedComment, "made by minisign");
    const signature = await readFile(`${file}.minisig`, "utf8");
    assert.throws(
      () => verifyMessage(Buffer.from("other bytes\n"), signature, trusted, "data"),
      signatureCode,
    );
  }
});
