// The stream half of the backup restore: source → gunzip → tar-stream's
// parser, read one entry at a time. What it adds to tar-stream is the error
// story: each stage's failure (the download, zlib, the tar parser) becomes one
// Rtr7Error that says which it was and how far the data got, e.g.
// "backup.tar.gz: unexpected end of data after 1234 bytes", and a cap on the
// decompressed length, so that a small gzip of zeros (which tar reads as empty
// blocks) cannot keep the restore busy for gigabytes.
import { createGunzip } from "node:zlib";
import { pipeline } from "node:stream/promises";
import { Transform, type Readable } from "node:stream";
import { extract as tarExtract, type Extract } from "tar-stream";
import { Rtr7Error, isRtr7Error, describeError } from "../../lib/errors.js";
import { formatBytes } from "../../lib/log.js";

/** One entry of the tar as tar-stream yields it: its header and its data. */
export type TarEntry = Extract extends AsyncIterable<infer Source> ? Source : never;

export function corruptError(sourceName: string, message: string, cause?: unknown): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_BACKUP_CORRUPT", `${sourceName}: ${message}`, { cause });
}

export class TarGzEntries {
  /** Compressed bytes read from the source so far. */
  gzipBytes = 0;
  /** Decompressed (tar) bytes passed to the parser so far. */
  tarBytes = 0;
  private firstBytes = Buffer.alloc(0);
  private failure: Rtr7Error | undefined;
  private readonly streams: { destroy(error?: Error): unknown }[];
  private readonly entries: AsyncIterator<TarEntry>;
  private readonly done: Promise<void>;

  constructor(
    private readonly source: Readable,
    private readonly sourceName: string,
    maxTarBytes: number,
  ) {
    const gzipCounter = counter((chunk) => {
      if (this.firstBytes.length < 2)
        this.firstBytes = Buffer.concat([this.firstBytes, chunk]).subarray(0, 2);
      this.gzipBytes += chunk.length;
    });
    const gunzip = createGunzip();
    const tarCounter = counter((chunk) => {
      this.tarBytes += chunk.length;
      if (this.tarBytes > maxTarBytes)
        throw new Rtr7Error(
          "RTR7_ERR_BACKUP_REJECTED",
          `${sourceName}: the tar inside is longer than ${formatBytes(maxTarBytes)}, more than the limits allow`,
        );
    });
    const extract = tarExtract();
    // Registered before pipeline() adds its own listeners, so the stage that
    // failed first is the one recorded (pipeline then destroys the others).
    source.on(
      "error",
      this.failed((error) =>
        this.corrupt(`reading failed after ${this.gzipBytes} bytes: ${error.message}`, error),
      ),
    );
    gzipCounter.on(
      "error",
      this.failed((error) => this.corrupt(error.message, error)),
    );
    gunzip.on(
      "error",
      this.failed((error) => this.gzipFailure(error)),
    );
    tarCounter.on(
      "error",
      this.failed((error) => this.corrupt(error.message, error)),
    );
    extract.on(
      "error",
      this.failed((error) =>
        this.corrupt(`corrupt tar after ${this.tarBytes} bytes of tar (${error.message})`, error),
      ),
    );
    this.streams = [gzipCounter, gunzip, tarCounter, extract];
    this.entries = extract[Symbol.asyncIterator]();
    this.done = pipeline(source, gzipCounter, gunzip, tarCounter, extract);
    // Awaited by finish(), or superseded by the caller's own error and stop().
    this.done.catch(() => {});
  }

  /** The next entry, or null after the last one. */
  async next(): Promise<TarEntry | null> {
    const step = await this.entries.next().catch((error: unknown) => {
      throw this.streamError(error);
    });
    return step.done === true ? null : step.value;
  }

  /** The data of an entry, chunk by chunk. */
  async *data(entry: TarEntry): AsyncGenerator<Buffer> {
    const chunks = entry[Symbol.asyncIterator]();
    for (;;) {
      const step = await chunks.next().catch((error: unknown) => {
        throw this.streamError(error);
      });
      if (step.done === true) return;
      yield step.value as Buffer;
    }
  }

  /** Waits for the whole stream to have been read without error. */
  async finish(): Promise<void> {
    await this.done.catch((error: unknown) => {
      throw this.streamError(error);
    });
  }

  /** Stops reading (after a refused entry): destroys the source and every stage. */
  stop(): void {
    const stopped = new Error("restore stopped");
    this.source.destroy();
    for (const stream of this.streams) stream.destroy(stopped);
  }

  private corrupt(message: string, cause?: unknown): Rtr7Error {
    return corruptError(this.sourceName, message, cause);
  }

  private failed(describe: (error: Error) => Rtr7Error): (error: Error) => void {
    return (error) => {
      this.failure ??= isRtr7Error(error) ? error : describe(error);
    };
  }

  private streamError(error: unknown): Rtr7Error {
    return this.failure ?? (isRtr7Error(error) ? error : this.corrupt(describeError(error), error));
  }

  private gzipFailure(error: Error): Rtr7Error {
    const [first, second] = this.firstBytes;
    if ((first !== undefined && first !== 0x1f) || (second !== undefined && second !== 0x8b))
      return this.corrupt(
        `not gzip data (it starts with 0x${this.firstBytes.toString("hex")}, gzip with 0x1f8b)`,
        error,
      );
    if ((error as NodeJS.ErrnoException).code === "Z_BUF_ERROR" || this.gzipBytes === 0)
      return this.corrupt(`unexpected end of data after ${this.gzipBytes} bytes`, error);
    return this.corrupt(
      `corrupt gzip data within the first ${this.gzipBytes} bytes (zlib: ${error.message})`,
      error,
    );
  }
}

/** A pass-through stream that shows each chunk to `see` (which may throw to stop). */
function counter(see: (chunk: Buffer) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      try {
        see(chunk);
        callback(null, chunk);
      } catch (error) {
        callback(error as Error);
      }
    },
  });
}
