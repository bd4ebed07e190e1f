// Streams an upload (an HTTP request body) onto its target: a partition, or
// in process mode an image file standing in for one, written from offset 0,
// hashed as it goes the way gokrazy's update protocol replies (SHA-256, or
// CRC-32 IEEE when the client sends `X-Gokrazy-Update-Hash: crc32`, both as
// lowercase hex; CRC-32 as the 8 digits of its big-endian bytes, which is
// Go's `fmt.Sprintf("%x", crc32.NewIEEE().Sum(nil))`, what gokrazy's updater
// hex-decodes and compares). The target is opened for writing in place,
// never created or truncated; more bytes than it holds are refused before
// they are written, and an upload that ends before its end is reported as
// truncated so the caller can mark the target invalid.
import { createHash } from "node:crypto";
import { open, readFile, stat } from "node:fs/promises";
import type { Readable } from "node:stream";
import { crc32 } from "node:zlib";
import { Rtr7Error, describeError } from "../../lib/errors.js";
import { formatBytes } from "../../lib/log.js";

export type HashAlgorithm = "sha256" | "crc32";

export const hashHeader = "x-gokrazy-update-hash";

/** The algorithm a request asks for: crc32 when its X-Gokrazy-Update-Hash says so, else SHA-256. */
export function requestedHashAlgorithm(value: string | string[] | undefined): HashAlgorithm {
  if (value === undefined || value === "" || value === "sha256") return "sha256";
  if (value === "crc32") return "crc32";
  throw new Rtr7Error(
    "RTR7_ERR_UPDATE_REQUEST",
    `X-Gokrazy-Update-Hash: got ${JSON.stringify(value)}, want "crc32" or none (SHA-256)`,
  );
}

export interface UpdateHash {
  update(chunk: Uint8Array): void;
  /** Lowercase hex: 64 digits for SHA-256, 8 for CRC-32. */
  hex(): string;
}

export function createUpdateHash(algorithm: HashAlgorithm): UpdateHash {
  if (algorithm === "sha256") {
    const hash = createHash("sha256");
    return { update: (chunk) => void hash.update(chunk), hex: () => hash.digest("hex") };
  }
  let value = 0;
  return {
    update: (chunk) => {
      value = crc32(chunk, value);
    },
    hex: () => value.toString(16).padStart(8, "0"),
  };
}

/**
 * How many bytes a target holds: a regular file's size, or a block device's
 * size from sysfs (/sys/dev/block/MAJOR:MINOR/size, always in 512-byte
 * sectors). Node has no lseek to seek to the end of a device, and sysfs
 * needs neither an ioctl binding nor util-linux's blockdev on the unit.
 */
export async function targetCapacity(path: string): Promise<number> {
  let info;
  try {
    info = await stat(path, { bigint: true });
  } catch (cause) {
    throw new Rtr7Error("RTR7_ERR_UPDATE_WRITE", `stat ${path}: ${describeError(cause)}`, { cause });
  }
  if (info.isFile()) return Number(info.size);
  if (!info.isBlockDevice()) {
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_WRITE",
      `${path} is neither a block device nor a regular file: it cannot hold an image`,
    );
  }
  // glibc's makedev encoding, as libuv fills st_rdev from statx.
  const rdev = info.rdev;
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  const sysfs = `/sys/dev/block/${major}:${minor}/size`;
  try {
    const sectors = Number((await readFile(sysfs, "utf8")).trim());
    if (!Number.isSafeInteger(sectors)) throw new Error(`not a number of sectors`);
    return sectors * 512;
  } catch (cause) {
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_WRITE",
      `read the size of ${path} from ${sysfs}: ${describeError(cause)}`,
      {
        cause,
      },
    );
  }
}

/** A request body (http.IncomingMessage), or any readable stream of bytes. */
export type UploadSource = Readable & { complete?: boolean };

export interface IdleLimit {
  /** No bytes for this long ends the upload as truncated. */
  timeoutMs: number;
  /** Called when it expires: must end the stream (destroy the connection). */
  onTimeout: () => void;
}

export interface WriteUploadOptions {
  source: UploadSource;
  /** What the body goes onto; opened in place ("r+"), never created or truncated. */
  targetPath: string;
  /** Names the target in messages ("root slot b", "the boot partition"). */
  targetName: string;
  /** Bytes the target holds: one more is refused with RTR7_ERR_UPDATE_WRITE. */
  capacity: number;
  algorithm: HashAlgorithm;
  /** The request's Content-Length, when it sent one: fewer bytes are a truncated upload. */
  expectedLength?: number;
  /** Called once, just before the first byte is written (the caller marks the target "writing"). */
  beforeFirstWrite?: () => Promise<void>;
  /** Ends an upload that stalls, so it cannot hold the update lock for ever. */
  idle?: IdleLimit;
  /** Called right before the body is first read (the server sends "100 Continue" then). */
  beforeRead?: () => void;
}

export interface WriteUploadResult {
  bytes: number;
  /** Lowercase hex of everything received (and written). */
  hash: string;
}

const batchBytes = 1024 * 1024;

/**
 * Streams `source` onto the target at offset 0, then fsyncs it. Throws
 * RTR7_ERR_UPDATE_TRUNCATED when the body ends early (a Content-Length not
 * reached, the request aborted, the connection closed) and
 * RTR7_ERR_UPDATE_WRITE when the body is larger than the target or a write
 * fails. Bytes are written in 1 MiB batches; callers learn whether anything
 * reached the target through beforeFirstWrite.
 */
export async function writeUpload(options: WriteUploadOptions): Promise<WriteUploadResult> {
  const { source, targetName, capacity } = options;
  const expected = options.expectedLength;
  if (expected !== undefined && expected > capacity) throw tooLarge(targetName, expected, capacity);
  const hash = createUpdateHash(options.algorithm);
  let target;
  try {
    target = await open(options.targetPath, "r+");
  } catch (cause) {
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_WRITE",
      `open ${options.targetPath} (${targetName}): ${describeError(cause)}`,
      {
        cause,
      },
    );
  }
  let received = 0;
  let written = 0;
  let started = false;
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  const flush = async (): Promise<void> => {
    if (pendingBytes === 0) return;
    if (!started) {
      started = true;
      await options.beforeFirstWrite?.();
    }
    const batch = Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    try {
      await target.write(batch, 0, batch.length, written);
    } catch (cause) {
      throw new Rtr7Error(
        "RTR7_ERR_UPDATE_WRITE",
        `write ${targetName} (${options.targetPath}) at byte ${written}: ${describeError(cause)}`,
        { cause },
      );
    }
    written += batch.length;
  };
  options.beforeRead?.();
  const idle = watchIdle(options.idle);
  try {
    try {
      for await (const chunk of chunksOf(source)) {
        idle.saw();
        if (received + chunk.length > capacity)
          throw tooLarge(targetName, received + chunk.length, capacity, true);
        received += chunk.length;
        hash.update(chunk);
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= batchBytes) await flush();
      }
    } catch (error) {
      if (error instanceof Rtr7Error) throw error;
      throw truncated(targetName, received, expected, idle.why() ?? describeError(error), error);
    } finally {
      idle.stop();
    }
    if (source.complete === false || (expected !== undefined && received < expected)) {
      throw truncated(targetName, received, expected, idle.why() ?? "the connection closed");
    }
    await flush();
    try {
      await target.sync();
    } catch (cause) {
      throw new Rtr7Error(
        "RTR7_ERR_UPDATE_WRITE",
        `fsync ${targetName} (${options.targetPath}): ${describeError(cause)}`,
        {
          cause,
        },
      );
    }
    return { bytes: received, hash: hash.hex() };
  } finally {
    await target.close().catch(() => undefined);
  }
}

export interface SmallBodyOptions {
  maxBytes: number;
  /** Names the request in messages. */
  what: string;
  /** Why the limit is what it is, for the refusal. */
  limitNote?: string;
  expectedLength?: number;
  idle?: IdleLimit;
  beforeRead?: () => void;
}

/**
 * Reads a small body whole (the MBR's boot code, a form). More than
 * `maxBytes` is refused with RTR7_ERR_UPDATE_REQUEST as soon as it is seen.
 */
export async function readSmallBody(source: UploadSource, options: SmallBodyOptions): Promise<Buffer> {
  const { maxBytes, what, expectedLength } = options;
  if (expectedLength !== undefined && expectedLength > maxBytes)
    throw overLimit(what, expectedLength, maxBytes, options.limitNote);
  options.beforeRead?.();
  const chunks: Uint8Array[] = [];
  let received = 0;
  const idle = watchIdle(options.idle);
  try {
    for await (const chunk of chunksOf(source)) {
      idle.saw();
      received += chunk.length;
      if (received > maxBytes) throw overLimit(what, received, maxBytes, options.limitNote);
      chunks.push(chunk);
    }
  } catch (error) {
    if (error instanceof Rtr7Error) throw error;
    throw truncated(what, received, expectedLength, idle.why() ?? describeError(error), error);
  } finally {
    idle.stop();
  }
  if (source.complete === false || (expectedLength !== undefined && received < expectedLength)) {
    throw truncated(what, received, expectedLength, idle.why() ?? "the connection closed");
  }
  return Buffer.concat(chunks, received);
}

/**
 * The stream's chunks, without destroying it when the reader stops early:
 * a request whose body is refused part way (too large) still gets its
 * answer on the same connection.
 */
function chunksOf(source: UploadSource): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]: () => source.iterator({ destroyOnReturn: false }) as AsyncIterator<Uint8Array>,
  };
}

function watchIdle(limit: IdleLimit | undefined): { saw(): void; stop(): void; why(): string | undefined } {
  if (!limit) return { saw: () => undefined, stop: () => undefined, why: () => undefined };
  let expired = false;
  const expire = (): void => {
    expired = true;
    limit.onTimeout();
  };
  let timer = setTimeout(expire, limit.timeoutMs);
  return {
    saw: () => {
      clearTimeout(timer);
      timer = setTimeout(expire, limit.timeoutMs);
    },
    stop: () => clearTimeout(timer),
    why: () => (expired ? `no data for ${limit.timeoutMs / 1000} s` : undefined),
  };
}

/** Writes `data` at `offset` of an existing target in place, then fsyncs it. */
export async function writeInPlace(
  path: string,
  offset: number,
  data: Uint8Array,
  what: string,
): Promise<void> {
  try {
    const target = await open(path, "r+");
    try {
      await target.write(data, 0, data.length, offset);
      await target.sync();
    } finally {
      await target.close();
    }
  } catch (cause) {
    throw new Rtr7Error("RTR7_ERR_UPDATE_WRITE", `write ${what} (${path}): ${describeError(cause)}`, {
      cause,
    });
  }
}

/** Reads `length` bytes at `offset` (fewer at the end of the target). */
export async function readAt(path: string, offset: number, length: number): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, offset);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** An upload larger than its target (RTR7_ERR_UPDATE_WRITE); HTTP answers it 413. */
export class CapacityError extends Rtr7Error {}

function tooLarge(targetName: string, bytes: number, capacity: number, atLeast = false): Rtr7Error {
  return new CapacityError(
    "RTR7_ERR_UPDATE_WRITE",
    `the upload is ${atLeast ? "at least " : ""}${bytes} bytes (${formatBytes(bytes)}); ${targetName} holds ${capacity} (${formatBytes(capacity)})`,
    { hint: "Build a smaller image: the partition layout is fixed (boot 100 MiB, root 500 MiB)." },
  );
}

function overLimit(what: string, bytes: number, maxBytes: number, note?: string): Rtr7Error {
  return new Rtr7Error(
    "RTR7_ERR_UPDATE_REQUEST",
    `${what}: the upload is ${bytes} bytes or more, want at most ${maxBytes}${note ? ` (${note})` : ""}`,
  );
}

function truncated(
  targetName: string,
  received: number,
  expected: number | undefined,
  why: string,
  cause?: unknown,
): Rtr7Error {
  const of = expected === undefined ? "" : ` of ${expected}`;
  return new Rtr7Error(
    "RTR7_ERR_UPDATE_TRUNCATED",
    `${targetName}: the upload ended after ${received}${of} bytes (${why})`,
    cause === undefined ? {} : { cause },
  );
}
