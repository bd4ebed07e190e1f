// The verified writer on its own (lib/disk/verified-writer.ts), on files in
// a scratch directory: where it writes and what it leaves alone, the room it
// refuses to go past, the hashes it reports (of what it read back), the
// fsync, and a read-back that differs from what was written. Which read
// comes when (past the page cache while writing, or only after the fsync
// and the drop of the cache) is shown with a disk that records its calls.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { crc32 } from "node:zlib";
import { fsDisk, type DiskDevice } from "../../lib/disk/device.js";
import { createStreamHash } from "../../lib/disk/hash.js";
import { writeVerified, type WriteFailureCodes } from "../../lib/disk/verified-writer.js";
import { isRtr7Error } from "../../lib/errors.js";
import { faultyDisk } from "../helpers/faulty-disk.js";
import { scratchDir } from "../helpers/scratch.js";

const MiB = 1024 * 1024;
const fill = 0xee;
const errors: WriteFailureCodes = {
  tooLarge: "RTR7_ERR_IMAGE_TOO_LARGE",
  io: "RTR7_ERR_UPDATE_WRITE",
  verify: "RTR7_ERR_UPDATE_VERIFY",
};

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** The data in uneven chunks, as a network delivers it. */
function* chunked(data: Buffer, size = 64 * 1024 + 3): Generator<Uint8Array> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

async function disk(dir: string, bytes: number): Promise<string> {
  const file = path.join(dir, "disk.img");
  await writeFile(file, Buffer.alloc(bytes, fill));
  return file;
}

test("writes at its offset, fsyncs, and replies the hash of what it read back", async (t) => {
  const dir = await scratchDir(t, "verified-writer");
  const target = await disk(dir, 8 * MiB);
  const data = randomBytes(3 * MiB + 17);
  const device = faultyDisk();
  const result = await writeVerified({
    path: target,
    name: "test image",
    source: chunked(data),
    offset: MiB + 512,
    algorithm: "sha256",
    device,
    errors,
  });
  assert.equal(result.bytes, data.length);
  assert.equal(result.hash, sha256(data));
  assert.deepEqual(device.synced, [target]);
  assert.equal(device.readers.length, 1, "the target was opened for read-back");
  assert.equal(result.readBack, device.readers[0]?.direct ? "direct" : "cached");
  const after = await readFile(target);
  assert.ok(after.subarray(MiB + 512, MiB + 512 + data.length).equals(data));
  assert.ok(
    after.subarray(0, MiB + 512).every((byte) => byte === fill),
    "nothing before the offset",
  );
  assert.ok(
    after.subarray(MiB + 512 + data.length).every((byte) => byte === fill),
    "nothing after the data",
  );
  assert.equal(after.length, 8 * MiB, "the target keeps its size");

  const crc = await writeVerified({ path: target, name: "t", source: [data], algorithm: "crc32", errors });
  assert.equal(crc.hash, crc32(data).toString(16).padStart(8, "0"));
  assert.match(crc.hash, /^[0-9a-f]{8}$/);
});

test("on ext4 and other file systems that take O_DIRECT, the read-back bypasses the page cache", async (t) => {
  const dir = await scratchDir(t, "verified-writer-direct");
  const target = await disk(dir, MiB);
  const reader = await fsDisk().openReader(target);
  await reader.close();
  if (!reader.direct) {
    t.skip(`${dir}: this file system refuses O_DIRECT; the read-back goes through the page cache there`);
    return;
  }
  const data = randomBytes(100_000);
  const result = await writeVerified({
    path: target,
    name: "t",
    source: [data],
    offset: 17,
    algorithm: "sha256",
    errors,
  });
  assert.equal(result.readBack, "direct");
  assert.equal(result.hash, sha256(data));
});

test("refuses more bytes than the room, and an offset past the end, before the byte that would not fit", async (t) => {
  const dir = await scratchDir(t, "verified-writer-room");
  const target = await disk(dir, 4 * MiB);
  const before = await readFile(target);
  const tooLarge = (pattern: RegExp) => (error: unknown) =>
    isRtr7Error(error, "RTR7_ERR_IMAGE_TOO_LARGE") && pattern.test(error.message);

  // Announced too large: refused before the source is read at all.
  let read = false;
  const untouched = (function* () {
    read = true;
    yield Buffer.alloc(1);
  })();
  await assert.rejects(
    writeVerified({
      path: target,
      name: "slot",
      source: untouched,
      offset: MiB,
      expectedBytes: 3 * MiB + 1,
      algorithm: "sha256",
      errors,
    }),
    tooLarge(/^slot: 3145729 bytes .* holds 3145728 .* at offset 1048576/),
  );
  assert.equal(read, false);

  // Found too large while streaming: nothing past the room is written.
  const device = faultyDisk();
  await assert.rejects(
    writeVerified({
      path: target,
      name: "slot",
      source: chunked(randomBytes(2 * MiB + 1)),
      capacity: 2 * MiB,
      algorithm: "sha256",
      device,
      errors,
    }),
    tooLarge(/at least 2\d+ bytes .* holds 2097152/),
  );
  const after = await readFile(target);
  assert.ok(after.subarray(2 * MiB).equals(before.subarray(2 * MiB)), "nothing past the room");
  assert.deepEqual(device.synced, [], "a refused write is never fsynced");

  await assert.rejects(
    writeVerified({
      path: target,
      name: "slot",
      source: [Buffer.alloc(1)],
      offset: 4 * MiB + 1,
      algorithm: "sha256",
      errors,
    }),
    tooLarge(/offset 4194305 is past the end/),
  );
  // A stated capacity never stretches a target past its end unless it is a
  // regular file, which grows (a staging file); a 0-byte write at the end is fine.
  const empty = path.join(dir, "staging");
  await writeFile(empty, "");
  const staged = await writeVerified({
    path: empty,
    name: "staging",
    source: [Buffer.from("abc")],
    capacity: 10,
    algorithm: "crc32",
    readBack: false,
    errors,
  });
  assert.equal(staged.readBack, "none");
  assert.equal(await readFile(empty, "utf8"), "abc");
});

test("a byte that reads back flipped is an error naming where, never a hash", async (t) => {
  const dir = await scratchDir(t, "verified-writer-flip");
  const target = await disk(dir, 64 * MiB);
  const data = randomBytes(40 * MiB);
  // In the third 16 MiB window, so windows before it were read back and passed.
  const flipAt = 4096 + 33 * MiB + 5;
  await assert.rejects(
    writeVerified({
      path: target,
      name: "root slot b",
      source: chunked(data, MiB / 2),
      offset: 4096,
      algorithm: "sha256",
      device: faultyDisk({ flipAt }),
      errors,
    }),
    (error) =>
      isRtr7Error(error, "RTR7_ERR_UPDATE_VERIFY") &&
      /^root slot b: read back bytes (\d+)\.\.(\d+) of .* differ from what was written \(crc32 [0-9a-f]{8}, want [0-9a-f]{8}\)/.test(
        error.message,
      ) &&
      (() => {
        const [, from, to] = /bytes (\d+)\.\.(\d+)/.exec(error.message) ?? [];
        return Number(from) <= flipAt && flipAt <= Number(to);
      })(),
  );
  // The same write with an honest disk passes: the fault was the read-back's alone.
  const clean = await writeVerified({
    path: target,
    name: "root slot b",
    source: chunked(data, MiB / 2),
    offset: 4096,
    algorithm: "crc32",
    errors,
  });
  assert.equal(clean.hash, crc32(data).toString(16).padStart(8, "0"));
});

test("a caller's hash is continued from the read-back bytes", async (t) => {
  const dir = await scratchDir(t, "verified-writer-hash");
  const target = await disk(dir, 512);
  const sector = randomBytes(446);
  const hash = createStreamHash("sha256");
  await writeVerified({
    path: target,
    name: "the MBR boot code",
    source: [sector.subarray(0, 440)],
    capacity: 440,
    algorithm: "sha256",
    hash,
    errors,
  });
  hash.update(sector.subarray(440));
  assert.equal(hash.hex(), sha256(sector));
  assert.ok((await readFile(target)).subarray(440).every((byte) => byte === fill));
});

test("a source that fails is passed on unchanged; nothing is fsynced or read back", async (t) => {
  const dir = await scratchDir(t, "verified-writer-source");
  const target = await disk(dir, 8 * MiB);
  const device = faultyDisk();
  const broken = new Error("the connection reset");
  const source = (function* () {
    yield randomBytes(3 * MiB);
    throw broken;
  })();
  await assert.rejects(
    writeVerified({ path: target, name: "t", source, algorithm: "sha256", device, errors }),
    (error) => error === broken,
  );
  assert.deepEqual(device.synced, []);
});

test("a write the disk refuses is the caller's I/O error, even while the source is still awaited", async (t) => {
  const dir = await scratchDir(t, "verified-writer-eio");
  const target = await disk(dir, 8 * MiB);
  const real = fsDisk();
  const failing: DiskDevice = {
    ...real,
    async openWriter(file) {
      const writer = await real.openWriter(file);
      return {
        ...writer,
        write: (data, position) =>
          position >= 2 * MiB
            ? Promise.reject(Object.assign(new Error("EIO: i/o error, write"), { code: "EIO" }))
            : writer.write(data, position),
      };
    },
  };
  const slowSource = async function* (): AsyncGenerator<Uint8Array> {
    for (let index = 0; index < 6; index += 1) {
      // The failed write settles while this waits: it must not go unhandled.
      await new Promise((resolve) => setTimeout(resolve, 20));
      yield randomBytes(MiB);
    }
  };
  await assert.rejects(
    writeVerified({
      path: target,
      name: "slot",
      source: slowSource(),
      algorithm: "sha256",
      device: failing,
      errors,
    }),
    (error) =>
      isRtr7Error(error, "RTR7_ERR_UPDATE_WRITE") &&
      /^write slot \(.*\) at byte 2097152: EIO/.test(error.message),
  );
});

/** The real disk, with a reader that claims what `direct` says, logging writes, syncs, drops and reads. */
function recordingDisk(direct: boolean, events: string[]): DiskDevice {
  const real = fsDisk();
  return {
    stat: (file) => real.stat(file),
    async openWriter(file) {
      const writer = await real.openWriter(file);
      return {
        write: async (data, position) => {
          await writer.write(data, position);
          events.push(`write ${position}`);
        },
        sync: async () => {
          await writer.sync();
          events.push("sync");
        },
        close: () => writer.close(),
      };
    },
    async openReader(file) {
      const reader = await real.openReader(file);
      return {
        direct,
        dropCache: () => {
          events.push("drop");
          return Promise.resolve();
        },
        readRange: (start, end, onBytes) => {
          events.push(`read ${start}..${end}`);
          return reader.readRange(start, end, onBytes);
        },
        close: () => reader.close(),
      };
    },
  };
}

test("with direct reads, windows are read back while later ones are written; otherwise all after fsync and the drop", async (t) => {
  const dir = await scratchDir(t, "verified-writer-order");
  const target = await disk(dir, 48 * MiB);
  const data = randomBytes(40 * MiB);

  const direct: string[] = [];
  await writeVerified({
    path: target,
    name: "t",
    source: chunked(data, MiB),
    algorithm: "crc32",
    device: recordingDisk(true, direct),
    errors,
  });
  const reads = direct.filter((event) => event.startsWith("read"));
  assert.deepEqual(reads, [
    `read 0..${16 * MiB}`,
    `read ${16 * MiB}..${32 * MiB}`,
    `read ${32 * MiB}..${40 * MiB}`,
  ]);
  assert.ok(
    direct.indexOf(reads[0] as string) < direct.indexOf("sync"),
    "the first window was read before the fsync",
  );
  assert.ok(
    direct.indexOf(reads[0] as string) < direct.lastIndexOf(`write ${39 * MiB}`),
    "…and before the last write",
  );
  assert.ok(!direct.includes("drop") || direct.indexOf("drop") > direct.indexOf("sync"));

  const cached: string[] = [];
  await writeVerified({
    path: target,
    name: "t",
    source: chunked(data, MiB),
    algorithm: "crc32",
    device: recordingDisk(false, cached),
    errors,
  });
  const firstRead = cached.findIndex((event) => event.startsWith("read"));
  assert.ok(
    cached.indexOf("sync") < cached.indexOf("drop") && cached.indexOf("drop") < firstRead,
    cached.join(", "),
  );
  assert.equal(cached.filter((event) => event.startsWith("read")).length, 3);
});
