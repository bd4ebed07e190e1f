// The update API's small parts on their own: the hash formats gokrazy's
// updater compares, target capacity (files and a real block device), body
// streaming (capacity, truncation, idle), the password file, the slot state
// file and checkBootable's squashfs checks, Basic auth parsing and the
// reboot form.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough, Readable } from "node:stream";
import { promisify } from "node:util";
import type { TestContext } from "node:test";
import { isRtr7Error } from "../../lib/errors.js";
import type { UnitPaths } from "../../router/unit.js";
import { basicAuthChecker, parseBasicAuthorization } from "../../router/update-api/basic-auth.js";
import { passwordFileName, readOrCreatePassword } from "../../router/update-api/password.js";
import { parseRebootForm, parseTestbootForm } from "../../router/update-api/reboot-form.js";
import {
  checkBootable,
  readSlotStates,
  slotStatePath,
  writeSlotState,
} from "../../router/update-api/slot-state.js";
import {
  createUpdateHash,
  readSmallBody,
  requestedHashAlgorithm,
  targetCapacity,
  writeUpload,
} from "../../router/update-api/write-target.js";
import { fileBackedUnitPaths } from "../helpers/unit-paths.js";

const execFileAsync = promisify(execFile);

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "rtr7-update-parts-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function hex(algorithm: "sha256" | "crc32", data: string): string {
  const hash = createUpdateHash(algorithm);
  hash.update(Buffer.from(data));
  return hash.hex();
}

test("hashes are lowercase hex; CRC-32 is always 8 digits, as Go's %x of crc32.Sum", () => {
  assert.equal(hex("crc32", "123456789"), "cbf43926");
  // A CRC-32 below 0x10000000 keeps its leading zeros (zlib in Python agrees: 00fb926f).
  assert.equal(hex("crc32", "rtr7-64"), "00fb926f");
  assert.equal(hex("sha256", "abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Incremental CRC over chunks equals the CRC of the whole.
  const chunked = createUpdateHash("crc32");
  chunked.update(Buffer.from("1234"));
  chunked.update(Buffer.from("56789"));
  assert.equal(chunked.hex(), "cbf43926");
  assert.equal(requestedHashAlgorithm(undefined), "sha256");
  assert.equal(requestedHashAlgorithm("crc32"), "crc32");
  assert.throws(
    () => requestedHashAlgorithm("md5"),
    (error) => isRtr7Error(error, "RTR7_ERR_UPDATE_REQUEST"),
  );
});

test("targetCapacity: a file's size, a block device's size from sysfs", async (t) => {
  const dir = await scratch(t);
  const file = path.join(dir, "slot.img");
  await writeFile(file, "");
  await truncate(file, 3 * 1024 * 1024 + 512);
  assert.equal(await targetCapacity(file), 3 * 1024 * 1024 + 512);
  await assert.rejects(targetCapacity(dir), (error) => isRtr7Error(error, "RTR7_ERR_UPDATE_WRITE"));
  await assert.rejects(targetCapacity(path.join(dir, "missing")), (error) =>
    isRtr7Error(error, "RTR7_ERR_UPDATE_WRITE"),
  );

  let listed: string;
  try {
    listed = (await execFileAsync("lsblk", ["-dbnro", "NAME,SIZE,TYPE"])).stdout;
  } catch {
    t.skip("block device part: lsblk is not available");
    return;
  }
  const disk = listed
    .split("\n")
    .map((line) => line.split(" "))
    .find(([name, size, type]) => type === "disk" && Number(size) > 0 && name !== undefined);
  if (!disk?.[0]) {
    t.skip("block device part: no disk here");
    return;
  }
  const device = `/dev/${disk[0]}`;
  if (!(await stat(device).catch(() => undefined))?.isBlockDevice()) {
    t.skip(`block device part: ${device} is not a block device node here`);
    return;
  }
  assert.equal(await targetCapacity(device), Number(disk[1]), `${device}: the size lsblk reports`);
});

test("writeUpload writes from offset 0, reads it back, refuses bytes beyond the capacity, and reports truncation", async (t) => {
  const dir = await scratch(t);
  const target = path.join(dir, "target.img");
  await writeFile(target, Buffer.alloc(4 * 1024 * 1024, 0xee));
  const data = randomBytes(2 * 1024 * 1024 + 17);
  const marks: string[] = [];
  const result = await writeUpload({
    source: Readable.from([data.subarray(0, 1000), data.subarray(1000)]),
    targetPath: target,
    targetName: "test target",
    capacity: 4 * 1024 * 1024,
    algorithm: "crc32",
    expectedLength: data.length,
    beforeRead: () => marks.push("read"),
    beforeFirstWrite: () => {
      marks.push("write");
      return Promise.resolve();
    },
  });
  assert.deepEqual(marks, ["read", "write"]);
  assert.equal(result.bytes, data.length);
  assert.notEqual(result.readBack, "none", "what was written was read back");
  const written = await readFile(target);
  assert.ok(written.subarray(0, data.length).equals(data));
  assert.equal(written[data.length], 0xee, "bytes after the upload are left alone");
  assert.equal(written.length, 4 * 1024 * 1024, "the target is not truncated");
  const expected = createUpdateHash("crc32");
  expected.update(data);
  assert.equal(result.hash, expected.hex());

  // Larger than the target: refused before anything is written.
  const before = await readFile(target);
  let wrote = false;
  await assert.rejects(
    writeUpload({
      source: Readable.from([randomBytes(5 * 1024 * 1024)]),
      targetPath: target,
      targetName: "test target",
      capacity: 4 * 1024 * 1024,
      algorithm: "sha256",
      beforeFirstWrite: () => {
        wrote = true;
        return Promise.resolve();
      },
    }),
    (error) => isRtr7Error(error, "RTR7_ERR_IMAGE_TOO_LARGE") && /holds 4194304/.test(error.message),
  );
  assert.equal(wrote, false);
  assert.ok((await readFile(target)).equals(before));

  // Fewer bytes than the Content-Length said.
  await assert.rejects(
    writeUpload({
      source: Readable.from([randomBytes(100)]),
      targetPath: target,
      targetName: "test target",
      capacity: 4 * 1024 * 1024,
      algorithm: "sha256",
      expectedLength: 1000,
    }),
    (error) =>
      isRtr7Error(error, "RTR7_ERR_UPDATE_TRUNCATED") && /ended after 100 of 1000 bytes/.test(error.message),
  );

  // A stream that breaks (the connection reset).
  const broken = new PassThrough();
  // Like http.IncomingMessage, which emits 'error' only to listeners.
  broken.on("error", () => undefined);
  broken.write(randomBytes(10));
  setImmediate(() => broken.destroy(new Error("aborted")));
  await assert.rejects(
    writeUpload({
      source: broken,
      targetPath: target,
      targetName: "t",
      capacity: 1 << 22,
      algorithm: "sha256",
    }),
    (error) => isRtr7Error(error, "RTR7_ERR_UPDATE_TRUNCATED"),
  );

  // A stream that stalls: the idle limit ends it.
  const stalled = new PassThrough();
  stalled.on("error", () => undefined);
  stalled.write(randomBytes(10));
  await assert.rejects(
    writeUpload({
      source: stalled,
      targetPath: target,
      targetName: "t",
      capacity: 1 << 22,
      algorithm: "sha256",
      idle: { timeoutMs: 50, onTimeout: () => stalled.destroy(new Error("idle")) },
    }),
    (error) => isRtr7Error(error, "RTR7_ERR_UPDATE_TRUNCATED") && /no data for 0.05 s/.test(error.message),
  );
});

test("readSmallBody refuses more than its limit", async () => {
  const body = await readSmallBody(Readable.from([Buffer.from("abc")]), { maxBytes: 3, what: "t" });
  assert.equal(body.toString(), "abc");
  await assert.rejects(
    readSmallBody(Readable.from([Buffer.from("abcd")]), { maxBytes: 3, what: "PUT /x" }),
    (error) => isRtr7Error(error, "RTR7_ERR_UPDATE_REQUEST") && /want at most 3/.test(error.message),
  );
  await assert.rejects(
    readSmallBody(Readable.from([]), { maxBytes: 3, what: "t", expectedLength: 9 }),
    (error) => isRtr7Error(error, "RTR7_ERR_UPDATE_REQUEST"),
  );
});

test("readOrCreatePassword keeps gokrazy's file, or makes a 0600 one once", async (t) => {
  const dir = await scratch(t);
  const made = await readOrCreatePassword(dir, () => Buffer.alloc(18, 0xfb));
  assert.deepEqual(made, { password: "-_v7-_v7-_v7-_v7-_v7-_v7", created: true });
  const file = path.join(dir, passwordFileName);
  assert.equal(await readFile(file, "utf8"), "-_v7-_v7-_v7-_v7-_v7-_v7\n");
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.deepEqual(await readOrCreatePassword(dir), { password: made.password, created: false });

  await writeFile(file, "hunter2\n");
  assert.deepEqual(await readOrCreatePassword(dir), { password: "hunter2", created: false });
  await writeFile(file, "\n");
  const replaced = await readOrCreatePassword(dir);
  assert.equal(replaced.created, true, "an empty file is no password");
  assert.equal(replaced.password.length, 24);

  // Two first starts at once agree on one password.
  const fresh = path.join(dir, "fresh");
  const [one, two] = await Promise.all([readOrCreatePassword(fresh), readOrCreatePassword(fresh)]);
  assert.equal(one.password, two.password);
  assert.equal([one.created, two.created].filter(Boolean).length, 1);
});

function squashfsHead(bytesUsed: bigint): Buffer {
  const head = Buffer.alloc(4096);
  head.write("hsqs", 0, "latin1");
  head.writeBigUInt64LE(bytesUsed, 40);
  return head;
}

async function unitPaths(dir: string): Promise<UnitPaths> {
  const paths = await fileBackedUnitPaths(dir);
  for (const slot of ["a", "b"] as const) {
    await writeFile(paths.roots[slot], "");
    await truncate(paths.roots[slot], 1024 * 1024);
  }
  return paths;
}

test("checkBootable wants a squashfs superblock that fits, and no writing or invalid record", async (t) => {
  const dir = await scratch(t);
  const paths = await unitPaths(dir);
  const refusal = (pattern: RegExp) => (error: unknown) =>
    isRtr7Error(error, "RTR7_ERR_SLOT_INVALID") && pattern.test(error.message);

  await assert.rejects(checkBootable(paths, "b"), refusal(/does not start with a squashfs superblock/));
  await writeFile(paths.roots.b, squashfsHead(4096n), { flag: "r+" });
  await checkBootable(paths, "b");
  await writeFile(paths.roots.b, squashfsHead(2n * 1024n * 1024n), { flag: "r+" });
  await assert.rejects(checkBootable(paths, "b"), refusal(/says 2097152 bytes; the slot holds 1048576/));
  await writeFile(paths.roots.b, squashfsHead(8192n), { flag: "r+" });

  await writeSlotState(paths.perm, "b", { state: "writing", since: "2024-01-01T00:00:00.000Z" });
  await assert.rejects(
    checkBootable(paths, "b"),
    refusal(/started at 2024-01-01T00:00:00.000Z and never completed/),
  );
  await writeSlotState(paths.perm, "b", { state: "invalid", why: "upload failed: cut", time: "t" });
  await assert.rejects(checkBootable(paths, "b"), refusal(/upload failed: cut/));
  await writeSlotState(paths.perm, "b", {
    state: "complete",
    algorithm: "sha256",
    hash: "0",
    size: 4096,
    time: "t",
  });
  await assert.rejects(checkBootable(paths, "b"), refusal(/the upload that filled it had 4096/));
  await writeSlotState(paths.perm, "b", {
    state: "complete",
    algorithm: "sha256",
    hash: "0",
    size: 8192,
    time: "t",
  });
  await checkBootable(paths, "b");

  // The other slot's record is kept; a damaged file refuses rather than guesses.
  await writeSlotState(paths.perm, "a", { state: "invalid", why: "x", time: "t" });
  assert.equal((await readSlotStates(paths.perm)).b?.state, "complete");
  await writeFile(slotStatePath(paths.perm), "{ not json");
  await assert.rejects(checkBootable(paths, "b"), refusal(/is not JSON/));
});

test("Basic auth: only user gokrazy with the password passes", () => {
  const check = basicAuthChecker("s3cret:with colon");
  const header = (text: string) => `Basic ${Buffer.from(text).toString("base64")}`;
  assert.equal(check(header("gokrazy:s3cret:with colon")), true);
  assert.equal(check(header("gokrazy:s3cret")), false);
  assert.equal(check(header("root:s3cret:with colon")), false);
  assert.equal(check(undefined), false);
  assert.equal(check("Bearer abc"), false);
  assert.equal(check("Basic !!!"), false);
  assert.deepEqual(parseBasicAuthorization(header("u:p")), { user: "u", password: "p" });
  assert.equal(parseBasicAuthorization(header("no-colon")), undefined);
});

test("the reboot form: kexec on by default, body over query, bad values refused", () => {
  assert.deepEqual(parseRebootForm("", ""), { kexec: true, async: false });
  assert.deepEqual(parseRebootForm("kexec=off", "async=true&wait_per_signal=1m30s"), {
    kexec: false,
    async: true,
    waitPerSignalMs: 90_000,
  });
  assert.equal(parseRebootForm("kexec=off", "kexec=on").kexec, true);
  for (const [query, pattern] of [
    ["kexec=perhaps", /kexec="perhaps"/],
    ["wait_per_signal=soon", /wait_per_signal/],
    ["reboot=now", /unknown field "reboot"/],
  ] as const) {
    assert.throws(
      () => parseRebootForm(query, ""),
      (error) => isRtr7Error(error, "RTR7_ERR_UPDATE_REQUEST") && pattern.test(error.message),
    );
  }
});

test("form errors quote at most a short prefix of a hostile value (a 4000-digit deadline is not echoed back)", () => {
  const cases: [() => unknown, number][] = [
    [() => parseTestbootForm("", `deadline=${"9".repeat(4000)}`), 4000],
    [() => parseRebootForm(`kexec=${"x".repeat(5000)}`, ""), 5000],
    [() => parseRebootForm("", `${"f".repeat(3000)}=1`), 3000],
  ];
  for (const [parse, length] of cases)
    assert.throws(parse, (error) => {
      assert.ok(isRtr7Error(error, "RTR7_ERR_UPDATE_REQUEST"));
      assert.ok(error.message.length < 250, `the error quotes ${error.message.length} characters`);
      assert.match(error.message, new RegExp(`\\(${length} characters\\)`));
      return true;
    });
});
