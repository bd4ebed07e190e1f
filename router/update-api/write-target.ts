// The update API's side of writing an upload (an HTTP request body) onto its
// target: a partition, or in process mode an image file standing in for one.
// The writing itself, with its capacity check, fsync and read-back past the
// page cache, is lib/disk/verified-writer.ts; this module turns a request
// body into its source (an upload that stalls or ends before its end is
// reported as truncated, so the caller can mark the target invalid), names
// the update API's error codes for it, and reads which hash a request asks
// for (SHA-256, or CRC-32 with `X-Gokrazy-Update-Hash: crc32`; formats in
// lib/disk/hash.ts). The reply to an upload is the hash of what was read
// back from the target, never of what was received.
import type { Readable } from "node:stream";
import { fsDisk, readAt, type DiskDevice } from "../../lib/disk/device.js";

export { readAt };
import { createStreamHash, type HashAlgorithm, type StreamHash } from "../../lib/disk/hash.js";
import {
  writeVerified,
  type VerifiedWriteResult,
  type WriteFailureCodes,
} from "../../lib/disk/verified-writer.js";
import { Rtr7Error, describeError } from "../../lib/errors.js";
import { updateHashHeader } from "../../lib/wire/update-protocol.js";
import { quoteInput } from "../../lib/quote.js";

export type { HashAlgorithm, StreamHash };

export const hashHeader = updateHashHeader;

/** The algorithm a request asks for: crc32 when its X-Gokrazy-Update-Hash says so, else SHA-256. */
export function requestedHashAlgorithm(value: string | string[] | undefined): HashAlgorithm {
  if (value === undefined || value === "" || value === "sha256") return "sha256";
  if (value === "crc32") return "crc32";
  throw new Rtr7Error(
    "RTR7_ERR_UPDATE_REQUEST",
    `X-Gokrazy-Update-Hash: got ${quoteInput(String(value))}, want "crc32" or none (SHA-256)`,
  );
}

export const createUpdateHash = createStreamHash;

/**
 * The reply's hash, and beside it the SHA-256 a signed manifest is compared
 * with (the same hash when the reply is SHA-256 already): both fed the
 * bytes read back.
 */
export function hashWithSha256(algorithm: HashAlgorithm): { hash: StreamHash; sha256: () => string } {
  const reply = createStreamHash(algorithm);
  if (algorithm === "sha256") return { hash: reply, sha256: () => reply.hex() };
  const sha256 = createStreamHash("sha256");
  return {
    hash: {
      update: (chunk) => {
        reply.update(chunk);
        sha256.update(chunk);
      },
      hex: () => reply.hex(),
    },
    sha256: () => sha256.hex(),
  };
}

/** How the update API's writes fail: too large (413), an I/O error, a read-back that differs. */
export const updateWriteErrors: WriteFailureCodes = {
  tooLarge: "RTR7_ERR_IMAGE_TOO_LARGE",
  io: "RTR7_ERR_UPDATE_WRITE",
  verify: "RTR7_ERR_UPDATE_VERIFY",
};

/** How many bytes a target holds (a file's size, a block device's from sysfs). */
export async function targetCapacity(path: string, device: DiskDevice = fsDisk()): Promise<number> {
  try {
    return (await device.stat(path)).bytes;
  } catch (cause) {
    throw new Rtr7Error("RTR7_ERR_UPDATE_WRITE", `stat ${path}: ${describeError(cause)}`, { cause });
  }
}

/** A request body (http.IncomingMessage), or any readable stream of bytes. */
export type UploadSource = Readable & { complete?: boolean };

/**
 * How long a body may take. A client that sends nothing, or sends a byte
 * now and then (one every 45 s kept every other update out with 409 for as
 * long as it liked), or takes longer than any real upload would, is cut
 * off: the upload ends as truncated, its target is marked invalid and the
 * update lock is free again.
 */
export interface IdleLimit {
  /** No bytes for this long ends the upload as truncated. */
  timeoutMs: number;
  /** The whole body must have arrived within this long. Default none. */
  deadlineMs?: number;
  /** After `graceMs`, fewer bytes than this per second on average ends it. Default none. */
  minBytesPerSecond?: number;
  /** How long a body may start slowly before the minimum rate applies. Default 30 s. */
  graceMs?: number;
  /** Called when it expires: must end the stream (destroy the connection). */
  onTimeout: () => void;
}

/** The update API's limits: a minute of silence, 16 KiB/s on average after 30 s, an hour in all. */
export const defaultUploadPace = {
  timeoutMs: 60_000,
  deadlineMs: 60 * 60_000,
  minBytesPerSecond: 16 * 1024,
  graceMs: 30_000,
} as const;

export interface WriteUploadOptions {
  source: UploadSource;
  /** What the body goes onto; opened in place, never created or truncated. */
  targetPath: string;
  /** Names the target in messages ("root slot b", "the boot partition"). */
  targetName: string;
  /** Bytes the target holds; default its size. One more is refused with RTR7_ERR_IMAGE_TOO_LARGE. */
  capacity?: number;
  algorithm: HashAlgorithm;
  /** Fed what is read back (hashWithSha256's); default a new hash of `algorithm`. */
  hash?: StreamHash;
  /** The request's Content-Length, when it sent one: fewer bytes are a truncated upload. */
  expectedLength?: number;
  /** Called once, just before the first byte is written (the caller marks the target "writing"). */
  beforeFirstWrite?: () => Promise<void>;
  /** Ends an upload that stalls, so it cannot hold the update lock for ever. */
  idle?: IdleLimit;
  /** Called right before the body is first read (the server sends "100 Continue" then). */
  beforeRead?: () => void;
  /** Default true; off only for a staging file that is copied on through here. */
  readBack?: boolean;
  device?: DiskDevice;
}

/**
 * Streams `source` onto the target at offset 0, fsyncs it and reads it back
 * (writeVerified). Throws RTR7_ERR_UPDATE_TRUNCATED when the body ends
 * early (a Content-Length not reached, the request aborted, the connection
 * closed or idle), RTR7_ERR_IMAGE_TOO_LARGE when it is larger than the
 * target, RTR7_ERR_UPDATE_WRITE when a write fails and
 * RTR7_ERR_UPDATE_VERIFY when the read-back differs.
 */
export function writeUpload(options: WriteUploadOptions): Promise<VerifiedWriteResult> {
  return writeVerified({
    path: options.targetPath,
    name: options.targetName,
    source: uploadChunks(options.source, {
      what: options.targetName,
      expectedLength: options.expectedLength,
      idle: options.idle,
      beforeRead: options.beforeRead,
    }),
    capacity: options.capacity,
    expectedBytes: options.expectedLength,
    algorithm: options.algorithm,
    hash: options.hash,
    readBack: options.readBack,
    device: options.device,
    errors: updateWriteErrors,
    beforeFirstWrite: options.beforeFirstWrite,
  });
}

interface ChunkOptions {
  /** Names the upload in messages. */
  what: string;
  expectedLength?: number;
  idle?: IdleLimit;
  beforeRead?: () => void;
}

/**
 * The body's chunks, read only when the consumer asks for the first one.
 * A body that breaks, stalls or ends short of its Content-Length throws
 * RTR7_ERR_UPDATE_TRUNCATED, the last time from after its last chunk, so a
 * writer never fsyncs or trusts a short upload.
 */
async function* uploadChunks(source: UploadSource, options: ChunkOptions): AsyncGenerator<Uint8Array> {
  const { what, expectedLength } = options;
  options.beforeRead?.();
  let received = 0;
  const idle = watchPace(options.idle, () => received);
  try {
    try {
      for await (const chunk of chunksOf(source)) {
        idle.saw();
        received += chunk.length;
        yield chunk;
      }
    } catch (error) {
      throw truncated(what, received, expectedLength, idle.why() ?? describeError(error), error);
    }
    if (source.complete === false || (expectedLength !== undefined && received < expectedLength)) {
      throw truncated(what, received, expectedLength, idle.why() ?? "the connection closed");
    }
  } finally {
    idle.stop();
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
  const chunks: Uint8Array[] = [];
  let received = 0;
  const body = uploadChunks(source, {
    what,
    expectedLength,
    idle: options.idle,
    beforeRead: options.beforeRead,
  });
  for await (const chunk of body) {
    received += chunk.length;
    if (received > maxBytes) throw overLimit(what, received, maxBytes, options.limitNote);
    chunks.push(chunk);
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

/** Watches a body against its limit; `why()` says which part of it ended the body, if one did. */
function watchPace(
  limit: IdleLimit | undefined,
  received: () => number,
): { saw(): void; stop(): void; why(): string | undefined } {
  if (!limit) return { saw: () => undefined, stop: () => undefined, why: () => undefined };
  let reason: string | undefined;
  const expire = (why: string): void => {
    if (reason !== undefined) return;
    reason = why;
    stop();
    limit.onTimeout();
  };
  const started = Date.now();
  let idle = setTimeout(() => expire(`no data for ${limit.timeoutMs / 1000} s`), limit.timeoutMs);
  const deadline =
    limit.deadlineMs === undefined
      ? undefined
      : setTimeout(() => expire(`not complete within ${limit.deadlineMs! / 1000} s`), limit.deadlineMs);
  const minimum = limit.minBytesPerSecond;
  const grace = limit.graceMs ?? 30_000;
  // The average rate is checked once a second after the grace period.
  const pace =
    minimum === undefined
      ? undefined
      : setInterval(() => {
          const seconds = (Date.now() - started) / 1000;
          if (seconds * 1000 < grace) return;
          const rate = received() / seconds;
          if (rate < minimum)
            expire(
              `${Math.round(rate)} bytes/s on average over ${Math.round(seconds)} s, below the ${minimum} bytes/s an upload must keep`,
            );
        }, 1000);
  function stop(): void {
    clearTimeout(idle);
    clearTimeout(deadline);
    clearInterval(pace);
  }
  return {
    saw: () => {
      if (reason !== undefined) return;
      clearTimeout(idle);
      idle = setTimeout(() => expire(`no data for ${limit.timeoutMs / 1000} s`), limit.timeoutMs);
    },
    stop,
    why: () => reason,
  };
}

/** Writes `data` at `offset` of an existing target in place, then fsyncs it. */
export async function writeInPlace(
  path: string,
  offset: number,
  data: Uint8Array,
  what: string,
  device: DiskDevice = fsDisk(),
): Promise<void> {
  try {
    const writer = await device.openWriter(path);
    try {
      await writer.write(data, offset);
      await writer.sync();
    } finally {
      await writer.close();
    }
  } catch (cause) {
    throw new Rtr7Error("RTR7_ERR_UPDATE_WRITE", `write ${what} (${path}): ${describeError(cause)}`, {
      cause,
    });
  }
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
