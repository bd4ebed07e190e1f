// Signed releases on the unit's update API, over real HTTP with curl (issue
// 14, points 1 and 4), against file-backed unit paths (update-api-fixture.ts,
// which checks after every test that the running slot is untouched and no
// credential reached a log). A unit that trusts key K refuses a manifest
// signed by another key, one edited after signing, a root.img that is not
// the signed one, and an older release unless a downgrade is asked for;
// each time nothing is switched (testboot and switch refused, syslinux.cfg's
// DEFAULT as it was). Unsigned uploads to it are refused at testboot; the
// same unsigned flow to a unit that trusts no key works as before. Key
// rotation: the new key's releases are refused until the old key
// introduces it, and a statement by a key the unit does not trust changes
// nothing.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestContext } from "node:test";
import { haveTool } from "../../lab/processes.js";
import { generateSigningKey, type SigningKey } from "../../lib/trust/minisign.js";
import { signManifest, signRotation } from "../../lib/trust/release-signature.js";
import { addTrustedKey, readTrustedKeys } from "../../lib/trust/trusted-keys.js";
import { sha256OfFile } from "../../lib/wire/manifest.js";
import { readPendingRelease, readSlotReleases } from "../../router/update-api/release-state.js";
import {
  makeBootImage,
  makeSquashfs,
  MiB,
  runMtools,
  startUnit,
  type TestUnit,
} from "./update-api-fixture.js";

const tools = ["curl", "mksquashfs", "mkfs.fat", "mcopy", "mtype"];

interface Images {
  running: string;
  root: string;
  otherRoot: string;
  boot: string;
  mbr: string;
  dir: string;
}

let images: Promise<Images> | undefined;
let imagesDir: string | undefined;
after(async () => {
  if (imagesDir) await rm(imagesDir, { recursive: true, force: true });
});

async function prepare(t: TestContext): Promise<Images | undefined> {
  for (const tool of tools)
    if (!(await haveTool(tool))) {
      t.skip(`needs ${tool}: run scripts/setup.sh`);
      return undefined;
    }
  images ??= (async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "rtr7-signed-images-"));
    imagesDir = dir;
    const mbr = path.join(dir, "mbr.img");
    await writeFile(mbr, randomBytes(440));
    return {
      dir,
      running: await makeSquashfs(dir, "running", MiB),
      root: await makeSquashfs(dir, "root", MiB),
      otherRoot: await makeSquashfs(dir, "other", MiB),
      boot: await makeBootImage(dir, "boot-next", "a", { diskId: 0 }),
      mbr,
    };
  })();
  return images;
}

/** A unit running slot a (committed), trusting `keys`. */
async function trustingUnit(
  t: TestContext,
  keys: SigningKey[],
): Promise<{ unit: TestUnit; images: Images } | undefined> {
  const prepared = await prepare(t);
  if (!prepared) return undefined;
  const unit = await startUnit(t, { running: "a", trial: false, committed: "a" }, prepared.running, {
    unit: { hostname: "router-under-test", address: "127.0.0.1" },
  });
  for (const key of keys) await addTrustedKey(unit.paths.perm, key.publicKey);
  return { unit, images: prepared };
}

/** manifest.json's text for these images. */
async function manifestFor(
  files: { root: string; boot: string; mbr: string },
  version: string,
  extra: Record<string, unknown> = { anyUnit: true },
): Promise<string> {
  const entry = async (name: string, file: string) => ({ name, ...(await sha256OfFile(file)) });
  const imagesList = [
    await entry("mbr.img", files.mbr),
    await entry("boot.img", files.boot),
    await entry("root.img", files.root),
  ];
  return `${JSON.stringify({ ...extra, version, images: imagesList }, null, 2)}\n`;
}

function sign(manifest: string, key: SigningKey, signedAtMs: number): string {
  return signManifest(Buffer.from(manifest), key, signedAtMs);
}

interface Reply {
  status: number;
  json: { code?: string; message?: string; hint?: string } & Record<string, unknown>;
}

async function request(unit: TestUnit, args: string[]): Promise<Reply> {
  const reply = await unit.curl([...unit.auth, "-H", "Accept: application/json", ...args]);
  let json: Reply["json"] = {};
  try {
    json = JSON.parse(reply.body) as Reply["json"];
  } catch {
    json = { body: reply.body };
  }
  return { status: reply.status, json };
}

async function putJson(unit: TestUnit, url: string, body: unknown): Promise<Reply> {
  const file = path.join(unit.dir, `body-${randomBytes(4).toString("hex")}.json`);
  await writeFile(file, JSON.stringify(body));
  try {
    return await request(unit, [
      "-X",
      "PUT",
      "-H",
      "Content-Type: application/json",
      "--data-binary",
      `@${file}`,
      `${unit.baseUrl}${url}`,
    ]);
  } finally {
    await rm(file, { force: true });
  }
}

const sendManifest = (unit: TestUnit, manifest: string, signature: string, allowDowngrade?: boolean) =>
  putJson(unit, "/update/manifest", {
    manifest,
    signature,
    ...(allowDowngrade === undefined ? {} : { allowDowngrade }),
  });

const upload = (unit: TestUnit, target: string, file: string, headers: string[] = []) =>
  request(unit, [...headers, "-T", file, `${unit.baseUrl}/update/${target}`]);

const post = (unit: TestUnit, action: string) =>
  request(unit, ["-X", "POST", `${unit.baseUrl}/update/${action}`]);

function assertRefused(reply: Reply, code: string, pattern: RegExp, what: string): void {
  assert.equal(reply.json.code, code, `${what}: ${JSON.stringify(reply.json)}`);
  assert.equal(reply.status, code === "RTR7_ERR_DOWNGRADE" ? 409 : 403, what);
  assert.match(reply.json.message ?? "", pattern, what);
  assert.equal(typeof reply.json.hint, "string", what);
}

/** testboot and switch both refused; the unit still runs and defaults to slot a. */
async function assertNothingSwitched(unit: TestUnit, why: RegExp): Promise<void> {
  for (const action of ["testboot", "switch"]) {
    const reply = await post(unit, action);
    assert.equal(reply.status === 200, false, `${action} was accepted: ${JSON.stringify(reply.json)}`);
    assert.match(reply.json.message ?? "", why, action);
  }
  assert.deepEqual(
    unit.boot.calls.filter((call) => /^(testboot|switchTo)/.test(call)),
    [],
    "the boot control was asked to switch",
  );
  assert.equal(unit.boot.state.committed, "a");
  const config = await runMtools("mtype", ["-i", unit.paths.boot, "::syslinux.cfg"]);
  assert.match(config, /^DEFAULT a$/m, "syslinux.cfg's DEFAULT changed");
  await unit.assertStillServing();
}

/** Manifest, root, boot, mbr, all accepted. */
async function pushSigned(unit: TestUnit, files: Images, manifest: string, signature: string): Promise<void> {
  const sent = await sendManifest(unit, manifest, signature);
  assert.equal(sent.status, 200, JSON.stringify(sent.json));
  for (const [target, file] of [
    ["root", files.root],
    ["boot", files.boot],
    ["mbr", files.mbr],
  ] as const) {
    const reply = await upload(unit, target, file);
    assert.equal(reply.status, 200, `${target}: ${JSON.stringify(reply.json)}`);
  }
}

test("a trusting unit takes a signed release: manifest, root, boot, mbr, testboot, then commit on trial", async (t) => {
  const key = generateSigningKey();
  const ready = await trustingUnit(t, [key]);
  if (!ready) return;
  const { unit, images: files } = ready;
  const features = await unit.curl([...unit.auth, `${unit.baseUrl}/update/features`]);
  assert.equal(features.body, "partuuid,updatehash,gzip,signed,");
  const manifest = await manifestFor(files, "v2");
  await pushSigned(unit, files, manifest, sign(manifest, key, 2_000_000));
  const pending = await readPendingRelease(unit.paths.perm);
  assert.deepEqual(Object.keys(pending?.matched ?? {}).sort(), ["boot", "mbr", "root"]);
  const trust = await request(unit, [`${unit.baseUrl}/update/trust`]);
  assert.deepEqual(trust.json.keys, [key.publicKey.keyId]);
  assert.deepEqual((trust.json.pending as { matched: string[] }).matched.sort(), ["boot", "mbr", "root"]);

  const testboot = await post(unit, "testboot");
  assert.equal(testboot.status, 200, JSON.stringify(testboot.json));
  assert.deepEqual(unit.boot.calls, ["testboot b"]);
  const releases = await readSlotReleases(unit.paths.perm);
  assert.equal(releases.b?.version, "v2");
  assert.equal(releases.b?.keyId, key.publicKey.keyId);
  assert.equal(releases.b?.signedAtMs, 2_000_000);
  assert.equal(await readPendingRelease(unit.paths.perm), undefined, "the pending release was not consumed");

  // The trial boot: slot b runs on trial and reports its signed release.
  Object.assign(unit.boot.state, { running: "b", trial: true });
  const running = await request(unit, [`${unit.baseUrl}/update/trust`]);
  assert.deepEqual(running.json.running, {
    slot: "b",
    version: "v2",
    signedAtMs: 2_000_000,
    keyId: key.publicKey.keyId,
  });
  const commit = await post(unit, "commit");
  assert.equal(commit.status, 200, JSON.stringify(commit.json));
  assert.equal(unit.boot.state.committed, "b");
});

test("(a) a manifest signed by another key and (b) one edited after signing are refused; nothing switched", async (t) => {
  const key = generateSigningKey();
  const ready = await trustingUnit(t, [key]);
  if (!ready) return;
  const { unit, images: files } = ready;
  const manifest = await manifestFor(files, "v2");

  const foreign = await sendManifest(unit, manifest, sign(manifest, generateSigningKey(), 2_000_000));
  assertRefused(
    foreign,
    "RTR7_ERR_SIGNATURE",
    /signed by key [0-9A-F]{16}, which is not trusted here/,
    "another key",
  );

  const signature = sign(manifest, key, 2_000_000);
  const edited = manifest.replace(/"size": \d+/, '"size": 1');
  const tampered = await sendManifest(unit, edited, signature);
  assertRefused(tampered, "RTR7_ERR_SIGNATURE", /does not match the signed file/, "edited manifest");

  const unsignedJunk = await sendManifest(unit, manifest, "not a signature");
  assertRefused(unsignedJunk, "RTR7_ERR_SIGNATURE", /manifest\.json/, "no signature");
  assert.equal(await readPendingRelease(unit.paths.perm), undefined, "a refused manifest was recorded");

  // The images themselves go up, but nothing signed names them.
  for (const [target, file] of [
    ["root", files.root],
    ["boot", files.boot],
  ] as const)
    assert.equal((await upload(unit, target, file)).status, 200);
  await assertNothingSwitched(unit, /no signed manifest was sent/);
});

test("(c) a root.img that is not the signed one is refused naming both hashes; its slot is invalid, nothing switched", async (t) => {
  const key = generateSigningKey();
  const ready = await trustingUnit(t, [key]);
  if (!ready) return;
  const { unit, images: files } = ready;
  const manifest = await manifestFor(files, "v2");
  assert.equal((await sendManifest(unit, manifest, sign(manifest, key, 2_000_000))).status, 200);
  const want = (await sha256OfFile(files.root)).sha256;
  const got = (await sha256OfFile(files.otherRoot)).sha256;
  // With CRC-32 asked for, the unit still compares the SHA-256 of what it read back.
  const wrong = await upload(unit, "root", files.otherRoot, ["-H", "X-Gokrazy-Update-Hash: crc32"]);
  assertRefused(
    wrong,
    "RTR7_ERR_SIGNATURE",
    new RegExp(`root\\.img does not match.*${got}.*${want}`),
    "root",
  );
  assert.equal((await unit.slotState("b"))?.state, "invalid");
  assert.equal((await upload(unit, "boot", files.boot)).status, 200);
  await assertNothingSwitched(unit, /slot b|root\.img/);

  // A boot image that is not the signed one never reaches the boot partition.
  const before = await readFile(unit.paths.boot);
  const wrongBoot = await upload(unit, "boot", files.root);
  assertRefused(wrongBoot, "RTR7_ERR_SIGNATURE", /boot\.img does not match/, "boot");
  assert.ok(before.equals(await readFile(unit.paths.boot)), "the boot partition changed");
  // Nor does an MBR that is not the signed one reach the disk.
  const mbrBefore = await readFile(unit.paths.mbr);
  const otherMbr = path.join(unit.dir, "other-mbr.img");
  await writeFile(otherMbr, randomBytes(440));
  assertRefused(await upload(unit, "mbr", otherMbr), "RTR7_ERR_SIGNATURE", /mbr\.img does not match/, "mbr");
  assert.ok(mbrBefore.equals(await readFile(unit.paths.mbr)), "the MBR changed");
  assert.equal((await upload(unit, "mbr", files.mbr)).status, 200, "the signed mbr.img is taken");
});

test("(d) an older signed release is refused without allowDowngrade and accepted with it", async (t) => {
  const key = generateSigningKey();
  const ready = await trustingUnit(t, [key]);
  if (!ready) return;
  const { unit, images: files } = ready;
  const v2 = await manifestFor(files, "v2");
  await pushSigned(unit, files, v2, sign(v2, key, 2_000_000));
  assert.equal((await post(unit, "testboot")).status, 200);
  // Slot b runs v2, committed; slot a is the inactive one again.
  Object.assign(unit.boot.state, { running: "b", trial: false, committed: "b" });
  unit.boot.calls.length = 0;

  const v1 = await manifestFor(files, "v1");
  const older = await sendManifest(unit, v1, sign(v1, key, 1_000_000));
  assertRefused(older, "RTR7_ERR_DOWNGRADE", /signed at .* before release v2 that slot b runs/, "downgrade");
  assert.equal(await readPendingRelease(unit.paths.perm), undefined);
  const testboot = await post(unit, "testboot");
  assert.equal(testboot.json.code, "RTR7_ERR_SIGNATURE", JSON.stringify(testboot.json));
  assert.deepEqual(unit.boot.calls, []);

  const allowed = await sendManifest(unit, v1, sign(v1, key, 1_000_000), true);
  assert.equal(allowed.status, 200, JSON.stringify(allowed.json));
  assert.equal(allowed.json.slot, "a");
  assert.equal((await readPendingRelease(unit.paths.perm))?.version, "v1");
});

test("a release signed for another host is refused; one for this host is taken", async (t) => {
  const key = generateSigningKey();
  const ready = await trustingUnit(t, [key]);
  if (!ready) return;
  const { unit, images: files } = ready;
  const elsewhere = await manifestFor(files, "v2", { hostname: "another-router" });
  const refused = await sendManifest(unit, elsewhere, sign(elsewhere, key, 2_000_000));
  assertRefused(refused, "RTR7_ERR_SIGNATURE", /signed for host:another-router/, "another host");
  const here = await manifestFor(files, "v2", { hostname: "router-under-test" });
  assert.equal((await sendManifest(unit, here, sign(here, key, 2_000_000))).status, 200);
});

test("unsigned: refused at testboot by a trusting unit (commit too); the same flow works on a unit that trusts no key", async (t) => {
  const ready = await trustingUnit(t, [generateSigningKey()]);
  if (!ready) return;
  const { unit, images: files } = ready;
  for (const [target, file] of [
    ["root", files.root],
    ["boot", files.boot],
    ["mbr", files.mbr],
  ] as const)
    assert.equal((await upload(unit, target, file)).status, 200, target);
  await assertNothingSwitched(unit, /its images are unsigned/);
  // A trial slot without a verified release is never made the default.
  Object.assign(unit.boot.state, { running: "b", trial: true });
  const commit = await post(unit, "commit");
  assertRefused(commit, "RTR7_ERR_SIGNATURE", /slot b holds no verified release/, "commit");
  assert.equal(unit.boot.state.committed, "a");
  Object.assign(unit.boot.state, { running: "a", trial: false });

  const plain = await trustingUnit(t, []);
  if (!plain) return;
  for (const [target, file] of [
    ["root", files.root],
    ["boot", files.boot],
    ["mbr", files.mbr],
  ] as const)
    assert.equal((await upload(plain.unit, target, file)).status, 200, target);
  const testboot = await post(plain.unit, "testboot");
  assert.equal(testboot.status, 200, JSON.stringify(testboot.json));
  assert.deepEqual(plain.unit.boot.calls, ["testboot b"]);
  const trust = await request(plain.unit, [`${plain.unit.baseUrl}/update/trust`]);
  assert.deepEqual(trust.json.keys, []);
});

test("rotation: the new key's release is refused until the old key introduces it; a foreign statement changes nothing", async (t) => {
  const oldKey = generateSigningKey();
  const newKey = generateSigningKey();
  const ready = await trustingUnit(t, [oldKey]);
  if (!ready) return;
  const { unit, images: files } = ready;
  const manifest = await manifestFor(files, "v3");
  const byNew = sign(manifest, newKey, 3_000_000);
  assertRefused(
    await sendManifest(unit, manifest, byNew),
    "RTR7_ERR_SIGNATURE",
    /not trusted here/,
    "new key early",
  );

  const foreign = await putJson(
    unit,
    "/update/trust",
    signRotation(newKey.publicKey, generateSigningKey(), 2_500_000),
  );
  assertRefused(foreign, "RTR7_ERR_SIGNATURE", /not trusted here/, "a foreign statement");
  assert.deepEqual(
    (await readTrustedKeys(unit.paths.perm)).keys.map((key) => key.keyId),
    [oldKey.publicKey.keyId],
  );

  const statement = signRotation(newKey.publicKey, oldKey, 2_500_000);
  const rotated = await putJson(unit, "/update/trust", statement);
  assert.equal(rotated.status, 200, JSON.stringify(rotated.json));
  assert.deepEqual(rotated.json, {
    changed: true,
    added: newKey.publicKey.keyId,
    removed: oldKey.publicKey.keyId,
    keys: [newKey.publicKey.keyId],
  });
  const again = await putJson(unit, "/update/trust", statement);
  assert.deepEqual(again.json, { changed: false, keys: [newKey.publicKey.keyId] });

  assert.equal((await sendManifest(unit, manifest, byNew)).status, 200);
  const byOld = await sendManifest(unit, manifest, sign(manifest, oldKey, 3_000_000));
  assertRefused(byOld, "RTR7_ERR_SIGNATURE", /not trusted here/, "the replaced key");

  const junk = await putJson(unit, "/update/trust", { publicKey: "nonsense", signature: "x" });
  assertRefused(junk, "RTR7_ERR_SIGNATURE", /not a minisign public key/, "junk statement");
  assert.equal((await putJson(unit, "/update/trust", { publicKey: 1 })).status, 400);
  await unit.assertStillServing();
});
