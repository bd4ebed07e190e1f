// verifyBackup against archives made by GNU tar: a whole one passes and its
// entries are counted; a cut gzip, a tar cut inside an entry, a tar cut
// right after its last entry (before the two zero blocks that end it, which
// tar-stream alone accepts), random bytes and an empty file are
// RTR7_ERR_BACKUP_CORRUPT; a missing file is RTR7_ERR_FILE_MISSING.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { isRtr7Error } from "../../lib/errors.js";
import { run } from "../../lab/processes.js";
import { verifyBackup } from "../../updates/backup-check.js";
import { scratchDir } from "../helpers/scratch.js";

async function permTree(root: string): Promise<void> {
  await mkdir(path.join(root, "data", "sub"), { recursive: true });
  await writeFile(path.join(root, "gokr-pw.txt"), "secret\n");
  await writeFile(path.join(root, "data", "big.bin"), randomBytes(300_000));
  await writeFile(path.join(root, "data", "sub", "empty"), "");
  await writeFile(path.join(root, "data", "sub", "odd.txt"), "x".repeat(1000));
}

/** Offset just past the last entry's data in an uncompressed tar (where its end blocks start). */
function endOfEntries(tar: Buffer): number {
  let offset = 0;
  for (;;) {
    const header = tar.subarray(offset, offset + 512);
    if (header.length < 512 || header.every((byte) => byte === 0)) return offset;
    const size = parseInt(header.subarray(124, 136).toString("ascii").replace(/\0.*$/, "").trim() || "0", 8);
    offset += 512 + Math.ceil(size / 512) * 512;
  }
}

const corrupt = (error: unknown): boolean => {
  assert.ok(isRtr7Error(error, "RTR7_ERR_BACKUP_CORRUPT"), String(error));
  return true;
};

test("a GNU tar czf archive passes, with its entries counted", async (t) => {
  const dir = await scratchDir(t, "backup-check");
  await permTree(path.join(dir, "perm"));
  const archive = path.join(dir, "backup.tar.gz");
  await run("tar", ["czf", archive, "-C", path.join(dir, "perm"), "."]);
  const listed = (await run("tar", ["tzf", archive])).stdout.trim().split("\n");
  const summary = await verifyBackup(archive);
  assert.equal(summary.entries, listed.length);
  assert.equal(summary.bytes, (await readFile(archive)).length);

  const empty = path.join(dir, "empty.tar.gz");
  await run("tar", ["czf", empty, "-T", "/dev/null"]);
  assert.deepEqual((await verifyBackup(empty)).entries, 0);
});

test("a truncated gzip, a cut tar, random bytes and an empty file are RTR7_ERR_BACKUP_CORRUPT", async (t) => {
  const dir = await scratchDir(t, "backup-check");
  await permTree(path.join(dir, "perm"));
  const tarFile = path.join(dir, "backup.tar");
  await run("tar", ["cf", tarFile, "-C", path.join(dir, "perm"), "."]);
  const tar = await readFile(tarFile);
  const gzip = gzipSync(tar);
  const write = async (name: string, content: Buffer): Promise<string> => {
    const file = path.join(dir, name);
    await writeFile(file, content);
    return file;
  };

  await assert.rejects(
    verifyBackup(await write("cut-gzip.tar.gz", gzip.subarray(0, gzip.length - 100))),
    corrupt,
  );
  await assert.rejects(
    verifyBackup(await write("cut-gzip-early.tar.gz", gzip.subarray(0, Math.floor(gzip.length / 2)))),
    corrupt,
  );

  const end = endOfEntries(tar);
  assert.ok(end > 0 && end < tar.length, "the tar has entries and end blocks");
  await assert.rejects(verifyBackup(await write("no-end.tar.gz", gzipSync(tar.subarray(0, end)))), corrupt);
  await assert.rejects(
    verifyBackup(await write("one-end-block.tar.gz", gzipSync(tar.subarray(0, end + 512)))),
    corrupt,
  );
  await assert.rejects(
    verifyBackup(await write("mid-entry.tar.gz", gzipSync(tar.subarray(0, 512 + 100_000)))),
    corrupt,
  );
  // Two end blocks are enough (GNU tar pads further to its record size).
  assert.ok(
    (await verifyBackup(await write("two-end-blocks.tar.gz", gzipSync(tar.subarray(0, end + 1024)))))
      .entries > 0,
  );

  await assert.rejects(verifyBackup(await write("random.tar.gz", randomBytes(100_000))), corrupt);
  await assert.rejects(verifyBackup(await write("empty.tar.gz", Buffer.alloc(0))), corrupt);
  await assert.rejects(verifyBackup(path.join(dir, "missing.tar.gz")), (error: unknown) =>
    isRtr7Error(error, "RTR7_ERR_FILE_MISSING"),
  );
});
