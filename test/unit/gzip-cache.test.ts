// A boot image is gzip'd once for a whole rollout: the same file (hard
// links of one inode) comes from the cache, with the uncompressed image's
// hash; a file changed since gets compressed again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { link, mkdtemp, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { compressedFile } from "../../updates/client/gzip-cache.js";

test("one compression per file: hard links share it, a changed file is compressed again", async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), "rtr7-gzip-cache-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const image = path.join(dir, "boot.img");
  const content = Buffer.alloc(1 << 20, 0);
  content.write("syslinux", 4096);
  await writeFile(image, content);
  await link(image, path.join(dir, "run-boot.img"));
  const first = compressedFile(image, await stat(image), "sha256");
  const again = compressedFile(
    path.join(dir, "run-boot.img"),
    await stat(path.join(dir, "run-boot.img")),
    "sha256",
  );
  assert.equal(first, again, "a hard link of the same file is compressed once");
  const compressed = await first;
  assert.ok(compressed.body.length < content.length / 100);
  assert.deepEqual(gunzipSync(compressed.body), content);
  assert.equal(compressed.hex, createHash("sha256").update(content).digest("hex"));
  assert.equal(compressed.bytes, content.length);
  const crc = compressedFile(image, await stat(image), "crc32");
  assert.notEqual(crc, first, "another hash algorithm is another entry");
  content.write("changed!", 8192);
  await writeFile(image, content);
  await utimes(image, new Date(), new Date(Date.now() + 5000));
  const changed = await compressedFile(image, await stat(image), "sha256");
  assert.equal(changed.hex, createHash("sha256").update(content).digest("hex"));
});
