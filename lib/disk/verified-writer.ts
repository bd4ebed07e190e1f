// The one way rtr7 writes an image onto a disk (STYLE habit 7: verify every
// byte written). recovery-init's image writer and the update API's uploads
// both stream through writeVerified():
//  - the room is checked first: an offset past the target's end, or a
//    source that says (or turns out) to be larger than the room, is refused
//    before the byte that would not fit is written;
//  - bytes are written at `offset` in 1 MiB batches, one write in flight
//    while the next batch is received, then fsynced;
//  - every byte is read back past the page cache (see device.ts) and
//    compared with what was written, window by window (CRC-32 of each
//    16 MiB: a failing disk is no adversary, and the caller's own hash,
//    below, is what a client checks end to end). Where reads are O_DIRECT a
//    window is read back as soon as it is written, so the read-back runs
//    beside the upload and the final fsync has little left to flush;
//    elsewhere everything is read back after the fsync and the drop of the
//    cache;
//  - the result's hash (SHA-256 or CRC-32) is of the bytes read back, not
//    of the bytes received.
// Failures carry the caller's codes (recovery-init: RTR7_ERR_IMAGE_*, the
// update API: RTR7_ERR_UPDATE_*); a source's own errors (a broken download,
// a truncated upload) pass through unchanged, and nothing after them runs.
import { crc32 } from "node:zlib";
import { Rtr7Error, describeError, type ErrorCode } from "../errors.js";
import { formatBytes } from "../log.js";
import { fsDisk, type DiskDevice, type DiskReader, type DiskWriter } from "./device.js";
import { createStreamHash, type HashAlgorithm, type StreamHash } from "./hash.js";

export interface WriteFailureCodes {
  /** An offset past the end, or more bytes than the room. */
  tooLarge: ErrorCode;
  /** stat, open, write, fsync or read failed. */
  io: ErrorCode;
  /** What was read back differs from what was written. */
  verify: ErrorCode;
  /** Replace the catalogue's hints where the caller knows better. */
  hints?: { tooLarge?: string; io?: string; verify?: string };
}

export interface VerifiedWriteOptions {
  path: string;
  /** Names the target in messages ("root slot b", "boot.img"). */
  name: string;
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
  /** Where the bytes go (default 0). */
  offset?: number;
  /**
   * Bytes the target holds from `offset`; default, what it holds past
   * `offset`. Never more than a block device holds; a regular file grows,
   * so a caller filling a new one (a staging file) names its room.
   */
  capacity?: number;
  /** Bytes the source says it will send: more than the room is refused before the source is read. */
  expectedBytes?: number;
  /** The result's hash. */
  algorithm: HashAlgorithm;
  /** Fed what is read back (or, without read-back, written); default a new hash of `algorithm`. A caller replying with the hash of more than it wrote (the MBR's boot code and disk signature) continues it. */
  hash?: StreamHash;
  /** Default true. Off only for a staging file that is itself copied through here. */
  readBack?: boolean;
  device?: DiskDevice;
  errors: WriteFailureCodes;
  /** Called once, just before the first byte is written. */
  beforeFirstWrite?: () => Promise<void>;
}

export interface VerifiedWriteResult {
  bytes: number;
  /** Lowercase hex, of the bytes read back (or written, without read-back). */
  hash: string;
  /** How the bytes were read back: "direct" (O_DIRECT), "cached" (through the page cache, after the caller's drop), "none". */
  readBack: "direct" | "cached" | "none";
}

const batchBytes = 1024 * 1024;
const windowBytes = 16 * 1024 * 1024;

interface Window {
  start: number;
  end: number;
  crc: number;
}

export async function writeVerified(options: VerifiedWriteOptions): Promise<VerifiedWriteResult> {
  const { path, name, errors } = options;
  const device = options.device ?? fsDisk();
  const offset = options.offset ?? 0;
  const fail = (kind: "io" | "verify", message: string, cause?: unknown): Rtr7Error =>
    new Rtr7Error(errors[kind], message, { cause, hint: errors.hints?.[kind] });
  const io = async <T>(what: string, action: () => Promise<T>): Promise<T> => {
    try {
      return await action();
    } catch (cause) {
      throw fail("io", `${what} ${name} (${path}): ${describeError(cause)}`, cause);
    }
  };

  const target = await io("stat", () => device.stat(path));
  const tooLarge = (message: string): Rtr7Error =>
    new Rtr7Error(errors.tooLarge, `${name}: ${message}`, { hint: errors.hints?.tooLarge });
  if (offset > target.bytes) {
    throw tooLarge(`offset ${offset} is past the end of ${path} (${target.bytes} bytes)`);
  }
  let room = options.capacity ?? target.bytes - offset;
  if (target.blockDevice) room = Math.min(room, target.bytes - offset);
  const refuse = (bytes: number, atLeast: boolean): Rtr7Error =>
    tooLarge(
      `${atLeast ? "at least " : ""}${bytes} bytes (${formatBytes(bytes)}) do not fit: ${path} holds ${room} (${formatBytes(room)}) at offset ${offset}`,
    );
  if (options.expectedBytes !== undefined && options.expectedBytes > room) {
    throw refuse(options.expectedBytes, false);
  }

  const readBack = options.readBack ?? true;
  const hash = options.hash ?? createStreamHash(options.algorithm);
  const writer = await io("open", () => device.openWriter(path));
  let reader: DiskReader | undefined;
  const verifier = new WindowVerifier(hash, name, path, offset, fail);
  let inFlight: Promise<void> | undefined;
  try {
    if (readBack) reader = await io("open", () => device.openReader(path));
    let received = 0;
    let written = 0;
    let started = false;
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    let window: Window = { start: 0, end: 0, crc: 0 };

    // The write in flight never rejects (that could go unhandled while the
    // source is awaited): its failure is kept and thrown from here.
    let writeFailure: Error | undefined;
    const awaitWrite = async (): Promise<void> => {
      const write = inFlight;
      inFlight = undefined;
      if (write) await write;
      if (writeFailure) throw writeFailure;
      verifier.rethrow();
    };
    const flush = async (): Promise<void> => {
      if (pendingBytes === 0) return;
      if (!started) {
        started = true;
        await options.beforeFirstWrite?.();
      }
      const batch = pending.length === 1 ? (pending[0] as Uint8Array) : Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      const at = written;
      written += batch.length;
      if (!reader) hash.update(batch);
      else {
        window.crc = crc32(batch, window.crc);
        window.end = written;
      }
      const closed = window.end - window.start >= windowBytes ? window : undefined;
      if (closed) window = { start: closed.end, end: closed.end, crc: 0 };
      await awaitWrite();
      inFlight = (async () => {
        try {
          await writer.write(batch, offset + at);
        } catch (cause) {
          writeFailure = fail(
            "io",
            `write ${name} (${path}) at byte ${offset + at}: ${describeError(cause)}`,
            cause,
          );
          return;
        }
        if (closed && reader?.direct) verifier.queue(reader, closed);
        else if (closed) verifier.defer(closed);
      })();
    };

    for await (const chunk of options.source) {
      if (received + chunk.length > room) throw refuse(received + chunk.length, true);
      received += chunk.length;
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= batchBytes) await flush();
    }
    await flush();
    await awaitWrite();
    await io("fsync", () => writer.sync());
    if (!reader) return { bytes: written, hash: hash.hex(), readBack: "none" };
    await io("drop the page cache of", () => (reader as DiskReader).dropCache());
    if (window.end > window.start) verifier.defer(window);
    await verifier.finish(reader);
    return { bytes: written, hash: hash.hex(), readBack: reader.direct ? "direct" : "cached" };
  } finally {
    await inFlight;
    await verifier.settle();
    await closeQuietly(writer);
    if (reader) await closeQuietly(reader);
  }
}

/**
 * Reads windows back in order, one at a time, feeding the result's hash:
 * queued ones (O_DIRECT) as soon as they are written, deferred ones after
 * the fsync. The first failure is kept and thrown by the writer.
 */
class WindowVerifier {
  private chain: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  private readonly deferred: Window[] = [];

  constructor(
    private readonly hash: StreamHash,
    private readonly name: string,
    private readonly path: string,
    private readonly offset: number,
    private readonly fail: (kind: "io" | "verify", message: string, cause?: unknown) => Rtr7Error,
  ) {}

  queue(reader: DiskReader, window: Window): void {
    this.chain = this.chain.then(async () => {
      if (this.failure === undefined) await this.verify(reader, window);
    });
    this.chain = this.chain.catch((error: unknown) => {
      this.failure ??= error instanceof Error ? error : new Error(String(error));
    });
  }

  defer(window: Window): void {
    this.deferred.push(window);
  }

  rethrow(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  async finish(reader: DiskReader): Promise<void> {
    for (const window of this.deferred.splice(0)) this.queue(reader, window);
    await this.chain;
    this.rethrow();
  }

  settle(): Promise<void> {
    return this.chain;
  }

  private async verify(reader: DiskReader, window: Window): Promise<void> {
    const { offset, name, path } = this;
    let crc = 0;
    const length = window.end - window.start;
    let got: number;
    try {
      got = await reader.readRange(offset + window.start, offset + window.end, (bytes) => {
        crc = crc32(bytes, crc);
        this.hash.update(bytes);
      });
    } catch (cause) {
      throw this.fail(
        "io",
        `read back ${name} (${path}) at byte ${offset + window.start}: ${describeError(cause)}`,
        cause,
      );
    }
    const range = `bytes ${offset + window.start}..${offset + window.end - 1}`;
    if (got !== length) {
      throw this.fail(
        "verify",
        `${name}: read back ${got} of the ${length} bytes written at ${range} of ${path}: the target ends early`,
      );
    }
    if (crc !== window.crc) {
      throw this.fail(
        "verify",
        `${name}: read back ${range} of ${path} differ from what was written (crc32 ${hex(crc)}, want ${hex(window.crc)}): the disk does not keep what it is given`,
      );
    }
  }
}

function hex(crc: number): string {
  return crc.toString(16).padStart(8, "0");
}

async function closeQuietly(handle: DiskWriter | DiskReader): Promise<void> {
  await handle.close().catch(() => undefined);
}
