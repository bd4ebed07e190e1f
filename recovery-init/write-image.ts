// Streams one image from the recovery server onto the disk: fetched over
// HTTP, checked against the manifest (size and SHA-256) before the disk is
// fsynced, and written through lib/disk/verified-writer.ts, which refuses
// what does not fit and reads every byte back past the page cache, so what
// is trusted is what the disk holds, not what was meant to reach it.
// router7 wrote images unverified.
import { createHash } from "node:crypto";
import { fsDisk, type DiskDevice } from "../lib/disk/device.js";
import { writeVerified } from "../lib/disk/verified-writer.js";
import { Rtr7Error } from "../lib/errors.js";
import type { ManifestImage } from "../lib/wire/manifest.js";

export interface ImageTarget {
  /** A block device (or, in tests, a file). */
  path: string;
  /** Where on it the image starts. */
  offset: number;
  /** Room there: an image larger than this is refused before anything is written. */
  capacity: number;
  /** Write only the first N bytes of the image (the MBR's boot code); all of it is still verified. */
  writeLimit?: number;
}

export interface WriteImageOptions {
  url: string;
  expected: ManifestImage;
  target: ImageTarget;
  fetch?: typeof fetch;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /** Empties the page cache where the disk refuses O_DIRECT (echo 3 > /proc/sys/vm/drop_caches on a unit). */
  dropCaches?: () => Promise<void>;
  /** The disk; default node:fs (tests inject one that flips a byte). */
  device?: DiskDevice;
}

export async function writeImage(options: WriteImageOptions): Promise<void> {
  const { expected, target } = options;
  const name = expected.name;
  const writeLength = Math.min(expected.size, target.writeLimit ?? expected.size);
  if (writeLength > target.capacity) {
    throw new Rtr7Error(
      "RTR7_ERR_IMAGE_TOO_LARGE",
      `${name}: ${expected.size} bytes do not fit ${target.path} at ${target.offset} (room: ${target.capacity} bytes)`,
    );
  }
  const result = await writeVerified({
    path: target.path,
    name,
    source: downloaded(options, writeLength),
    offset: target.offset,
    capacity: target.capacity,
    expectedBytes: writeLength,
    algorithm: "sha256",
    device: options.device ?? fsDisk({ dropCaches: options.dropCaches }),
    errors: {
      tooLarge: "RTR7_ERR_IMAGE_TOO_LARGE",
      io: "RTR7_ERR_IMAGE_VERIFY",
      verify: "RTR7_ERR_IMAGE_VERIFY",
      hints: {
        io: "The unit's disk refused a read or write: check its cabling and the kernel's messages on the console; replace the disk if it repeats.",
      },
    },
  });
  // Already implied (the download matched the manifest, the disk matched the
  // download), but this is the statement that matters: the disk holds the
  // manifest's image.
  if (writeLength === expected.size && result.hash !== expected.sha256) {
    throw new Rtr7Error(
      "RTR7_ERR_IMAGE_VERIFY",
      `${name}: read back from ${target.path}, sha256 ${result.hash}, want ${expected.sha256} (manifest): the disk is failing`,
    );
  }
}

/**
 * The image's bytes as the server sends them, cut to `writeLength`, hashed
 * whole against the manifest; a size or hash that differs throws after the
 * last byte, before the writer fsyncs.
 */
async function* downloaded(options: WriteImageOptions, writeLength: number): AsyncGenerator<Uint8Array> {
  const { expected } = options;
  const name = expected.name;
  const response = await (options.fetch ?? fetch)(options.url);
  if (response.status !== 200 || !response.body) {
    throw new Rtr7Error("RTR7_ERR_IMAGE_FETCH", `${name}: GET ${options.url}: HTTP ${response.status}`);
  }
  const announced = response.headers.get("content-length");
  if (announced !== null && Number(announced) !== expected.size) {
    throw new Rtr7Error(
      "RTR7_ERR_IMAGE_VERIFY",
      `${name}: the server sends ${announced} bytes, the manifest says ${expected.size}`,
    );
  }
  const imageHash = createHash("sha256");
  let received = 0;
  const body = response.body as AsyncIterable<Uint8Array>;
  const chunks = async function* (): AsyncGenerator<Uint8Array> {
    try {
      yield* body;
    } catch (error) {
      throw new Rtr7Error(
        "RTR7_ERR_IMAGE_FETCH",
        `${name}: the download broke after ${received} of ${expected.size} bytes (${(error as Error).message})`,
        { cause: error },
      );
    }
  };
  for await (const chunk of chunks()) {
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (received + bytes.length > expected.size) {
      throw new Rtr7Error(
        "RTR7_ERR_IMAGE_VERIFY",
        `${name}: the server sent more than the manifest's ${expected.size} bytes`,
      );
    }
    imageHash.update(bytes);
    const toWrite = bytes.subarray(0, Math.max(0, Math.min(bytes.length, writeLength - received)));
    received += bytes.length;
    if (toWrite.length > 0) yield toWrite;
    options.onProgress?.(received, expected.size);
  }
  if (received !== expected.size) {
    throw new Rtr7Error(
      "RTR7_ERR_IMAGE_VERIFY",
      `${name}: short read: got ${received} of ${expected.size} bytes; the disk is not to be booted`,
    );
  }
  const got = imageHash.digest("hex");
  if (got !== expected.sha256) {
    throw new Rtr7Error(
      "RTR7_ERR_IMAGE_VERIFY",
      `${name}: sha256 mismatch: got ${got}, want ${expected.sha256} (manifest); the disk is not to be booted`,
    );
  }
}
