// The update API replies with the hash of what it read back from the
// target, and a target that does not give back what it was sent gets an
// error instead of a hash (STYLE habit 7). Through fastify's inject(), with
// file-backed unit paths and a disk (test/helpers/faulty-disk.ts) that flips
// one byte on its way back from the slot, the boot partition or the MBR.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFile, truncate, writeFile } from "node:fs/promises";
import type { DiskDevice } from "../../lib/disk/device.js";
import { silentLogger } from "../../lib/log.js";
import type { BootControl } from "../../router/boot/boot-control.js";
import type { Slot, UnitPaths } from "../../router/unit.js";
import { buildUpdateApi } from "../../router/update-api/server.js";
import { readSlotStates } from "../../router/update-api/slot-state.js";
import { faultyDisk } from "../helpers/faulty-disk.js";
import { scratchDir } from "../helpers/scratch.js";
import { fileBackedUnitPaths } from "../helpers/unit-paths.js";

const MiB = 1024 * 1024;
const password = "test-password";
const authorization = `Basic ${Buffer.from(`gokrazy:${password}`).toString("base64")}`;

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A squashfs-looking image: magic "hsqs" and bytes_used = its length, then random bytes. */
function rootImage(bytes: number): Buffer {
  const image = randomBytes(bytes);
  image.write("hsqs", 0, "latin1");
  image.writeBigUInt64LE(BigInt(bytes), 40);
  return image;
}

/** Runs slot a, committed; records what reaches it. */
function bootControl(calls: string[]): BootControl {
  const record = (call: string): Promise<void> => {
    calls.push(call);
    return Promise.resolve();
  };
  return {
    running: () => ({ slot: "a", trial: false }),
    committedSlot: () => Promise.resolve<Slot>("a"),
    switchTo: (slot) => record(`switchTo ${slot}`),
    testboot: (slot) => record(`testboot ${slot}`),
    commit: () => Promise.resolve<Slot>("a"),
    checkReboot: () => Promise.resolve(),
    reboot: () => Promise.resolve(),
    keepDefault: (slot) => record(`keepDefault ${slot}`),
  };
}

async function setUp(t: TestContext, disk: (paths: UnitPaths) => DiskDevice | undefined) {
  const dir = await scratchDir(t, "update-readback");
  const paths = await fileBackedUnitPaths(dir);
  for (const file of [paths.roots.a, paths.roots.b, paths.boot]) {
    await writeFile(file, "");
    await truncate(file, 8 * MiB);
  }
  await writeFile(paths.mbr, Buffer.alloc(512, 0x11));
  const calls: string[] = [];
  const app = buildUpdateApi({
    paths,
    boot: bootControl(calls),
    password,
    log: silentLogger(),
    disk: disk(paths),
  });
  t.after(() => app.close());
  const put = (url: string, payload: Buffer, headers: Record<string, string> = {}) =>
    app.inject({ method: "PUT", url, payload, headers: { authorization, ...headers } });
  const post = (url: string) => app.inject({ method: "POST", url, headers: { authorization } });
  return { paths, calls, put, post };
}

function errorCode(body: string): string {
  return (JSON.parse(body) as { code: string }).code;
}

test("PUT /update/root replies the hash of what it read back from the slot", async (t) => {
  const device = faultyDisk();
  const { paths, put, post, calls } = await setUp(t, () => device);
  const image = rootImage(3 * MiB + 5);
  const sha = await put("/update/root", image);
  assert.equal(sha.statusCode, 200, sha.body);
  assert.equal(sha.body, sha256(image));
  assert.deepEqual(
    device.readers.map((reader) => reader.path),
    [paths.roots.b],
    "the reply comes from reading slot b back",
  );
  const crc = await put("/update/root", image, { "x-gokrazy-update-hash": "crc32" });
  assert.equal(crc.statusCode, 200, crc.body);
  assert.match(crc.body, /^[0-9a-f]{8}$/);
  assert.equal((await readSlotStates(paths.perm)).b?.state, "complete");
  assert.equal((await post("/update/switch")).statusCode, 200);
  assert.deepEqual(calls, ["switchTo b"]);
});

test("a slot whose read-back differs gets RTR7_ERR_UPDATE_VERIFY instead of a hash; switch and testboot refuse it", async (t) => {
  const { paths, put, post, calls } = await setUp(t, (unit) =>
    faultyDisk({ path: unit.roots.b, flipAt: 2 * MiB + 77 }),
  );
  const image = rootImage(3 * MiB);
  const reply = await put("/update/root", image);
  assert.equal(reply.statusCode, 500);
  assert.equal(errorCode(reply.body), "RTR7_ERR_UPDATE_VERIFY");
  assert.doesNotMatch(reply.body, new RegExp(sha256(image)), "no hash in the reply");
  const state = (await readSlotStates(paths.perm)).b;
  assert.ok(state?.state === "invalid" && /read back/.test(state.why), JSON.stringify(state));
  assert.ok(
    (await readFile(paths.roots.b)).subarray(0, 4096).every((byte) => byte === 0),
    "its head is zeroed",
  );
  for (const url of ["/update/switch", "/update/testboot"]) {
    const refused = await post(url);
    assert.equal(refused.statusCode, 409, url);
    assert.equal(errorCode(refused.body), "RTR7_ERR_SLOT_INVALID");
  }
  assert.deepEqual(calls, [], "nothing reached the BootControl");
});

test("a boot partition or MBR whose read-back differs gets RTR7_ERR_UPDATE_VERIFY", async (t) => {
  const { paths, put, calls } = await setUp(t, (unit) => {
    const boot = faultyDisk({ path: unit.boot, flipAt: MiB });
    const mbr = faultyDisk({ path: unit.mbr, flipAt: 439 });
    return { ...boot, openReader: (file) => (file === unit.mbr ? mbr : boot).openReader(file) };
  });
  const bootImage = randomBytes(2 * MiB);
  const boot = await put("/update/boot", bootImage);
  assert.equal(boot.statusCode, 500);
  assert.equal(errorCode(boot.body), "RTR7_ERR_UPDATE_VERIFY");
  assert.deepEqual(calls, [], "DEFAULT was not touched");

  const before = await readFile(paths.mbr);
  const sector = randomBytes(446);
  const mbr = await put("/update/mbr", sector);
  assert.equal(mbr.statusCode, 500);
  assert.equal(errorCode(mbr.body), "RTR7_ERR_UPDATE_VERIFY");
  assert.ok((await readFile(paths.mbr)).subarray(440).equals(before.subarray(440)), "the table is untouched");
});

test("an honest MBR replies the hash of all that was sent, the boot code as read back", async (t) => {
  const device = faultyDisk();
  const { paths, put } = await setUp(t, () => device);
  const sector = randomBytes(446);
  const reply = await put("/update/mbr", sector);
  assert.equal(reply.statusCode, 200, reply.body);
  assert.equal(reply.body, sha256(sector));
  assert.deepEqual(
    device.readers.map((reader) => reader.path),
    [paths.mbr],
  );
  const bootImage = randomBytes(2 * MiB);
  const boot = await put("/update/boot", bootImage, { "x-gokrazy-update-hash": "crc32" });
  assert.equal(boot.statusCode, 200, boot.body);
  assert.ok((await readFile(paths.boot)).subarray(0, bootImage.length).equals(bootImage));
  assert.deepEqual(
    device.readers.map((reader) => reader.path),
    [paths.mbr, paths.boot],
    "the boot partition was read back (the staging file is not)",
  );
});
