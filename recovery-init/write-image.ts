// Streams one image from the recovery server onto the disk: fetched over
// HTTP, hashed while written, checked against the manifest (size and
// SHA-256), then read back from the disk with the page cache dropped and
// hashed again, so what is trusted is what the disk holds, not what was
// meant to reach it. router7 wrote images unverified.
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
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
  /** Empties the page cache before the read-back (echo 3 > /proc/sys/vm/drop_caches on a unit). */
  dropCaches?: () => Promise<void>;
}

const batchBytes = 1024 * 1024;

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
  const writtenHash = createHash("sha256");
  const device = await open(target.path, "r+");
  let received = 0;
  let written = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = async (): Promise<void> => {
    if (pendingBytes === 0) return;
    const batch = Buffer.concat(pending, pendingBytes);
    await device.write(batch, 0, batch.length, target.offset + written);
    written += batch.length;
    pending = [];
    pendingBytes = 0;
  };
  const chunks = async function* (body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
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
  try {
    for await (const chunk of chunks(response.body)) {
      const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      if (received + bytes.length > expected.size) {
        throw new Rtr7Error(
          "RTR7_ERR_IMAGE_VERIFY",
          `${name}: the server sent more than the manifest's ${expected.size} bytes`,
        );
      }
      imageHash.update(bytes);
      const toWrite = bytes.subarray(0, Math.max(0, Math.min(bytes.length, writeLength - received)));
      if (toWrite.length > 0) {
        writtenHash.update(toWrite);
        pending.push(toWrite);
        pendingBytes += toWrite.length;
        if (pendingBytes >= batchBytes) await flush();
      }
      received += bytes.length;
      options.onProgress?.(received, expected.size);
    }
    await flush();
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
    await device.sync();
  } finally {
    await device.close();
  }
  await verifyOnDisk(target, written, writtenHash.digest("hex"), name, options.dropCaches);
}

/** Reads back what was written, past the page cache, and compares hashes. */
async function verifyOnDisk(
  target: ImageTarget,
  length: number,
  want: string,
  name: string,
  dropCaches: (() => Promise<void>) | undefined,
): Promise<void> {
  await dropCaches?.();
  const device = await open(target.path, "r");
  const hash = createHash("sha256");
  const buffer = Buffer.allocUnsafe(batchBytes);
  try {
    for (let done = 0; done < length;) {
      const { bytesRead } = await device.read(
        buffer,
        0,
        Math.min(buffer.length, length - done),
        target.offset + done,
      );
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      done += bytesRead;
    }
  } finally {
    await device.close();
  }
  const got = hash.digest("hex");
  if (got !== want) {
    throw new Rtr7Error(
      "RTR7_ERR_IMAGE_VERIFY",
      `${name}: read back from ${target.path} differs from what was written (sha256 ${got}, want ${want}): the disk is failing`,
    );
  }
}
