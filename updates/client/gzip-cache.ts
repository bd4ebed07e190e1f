// Boot images gzip'd once per file, not once per unit. A fleet rollout
// pushes one release's boot.img (hard links of one inode in every unit's
// run directory) to every unit that lists the `gzip` feature; compressing
// its 100 MiB costs seconds of CPU and holds ~24 MiB, and doing that per
// unit made a wave of ten hold ten copies. Here the compressed bytes and
// the hash of the uncompressed image are kept for the last few files, keyed
// by the file's identity (device, inode, size, mtime) and the hash
// algorithm, so a changed file is never served from the cache.
import { createReadStream, type Stats } from "node:fs";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { Rtr7Error } from "../../lib/errors.js";
import { createStreamHash } from "../../lib/disk/hash.js";
import type { UpdateHash } from "../../lib/wire/update-protocol.js";

export interface CompressedFile {
  /** The gzip stream (level 1), whole. */
  body: Buffer;
  /** The uncompressed size and its hash, as the unit will report it. */
  bytes: number;
  hex: string;
}

const kept = new Map<string, Promise<CompressedFile>>();
/** Files kept at once: a rollout has one release; a second covers a switch between two. */
const keepFiles = 2;

async function compress(file: string, size: number, algorithm: UpdateHash): Promise<CompressedFile> {
  const hasher = createStreamHash(algorithm);
  let bytes = 0;
  const chunks: Buffer[] = [];
  const hashing = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      hasher.update(chunk);
      callback(null, chunk);
    },
  });
  const source =
    size === 0 ? [] : createReadStream(file, { start: 0, end: size - 1, highWaterMark: 4 << 20 });
  await pipeline(source, hashing, createGzip({ level: 1 }), async (gzipped: AsyncIterable<Buffer>) => {
    for await (const chunk of gzipped) chunks.push(chunk);
  });
  if (bytes !== size)
    throw new Rtr7Error(
      "RTR7_ERR_FILE_MISSING",
      `${file} changed while being compressed (${bytes} of ${size} bytes)`,
    );
  return { body: Buffer.concat(chunks), bytes, hex: hasher.hex() };
}

/** The file gzip'd, from the cache when the same file (same inode, size and mtime) was compressed before. */
export function compressedFile(file: string, info: Stats, algorithm: UpdateHash): Promise<CompressedFile> {
  const key = `${info.dev}:${info.ino}:${info.size}:${info.mtimeMs}:${algorithm}`;
  let entry = kept.get(key);
  if (!entry) {
    entry = compress(file, info.size, algorithm);
    kept.set(key, entry);
    entry.catch(() => kept.delete(key));
    while (kept.size > keepFiles) kept.delete(kept.keys().next().value as string);
  } else {
    // Most recently used last.
    kept.delete(key);
    kept.set(key, entry);
  }
  return entry;
}
