// PUT /update/<target>: an image streamed to the unit and verified as
// gokrazy's updater does it: the unit replies with the hash of what it
// wrote (SHA-256, or CRC-32 when asked with X-Gokrazy-Update-Hash), which
// must equal the hash of what was sent. The request asks `Expect:
// 100-continue`, so a unit that refuses (401, 409 busy) does so before any
// byte is read from the source; a busy unit is asked again every couple of
// seconds for a while, since a unit whose previous upload connection died
// holds its lock until its own idle timeout. A boot image (100 MiB of FAT,
// most of it empty) goes gzip'd to a unit that lists the `gzip` feature:
// the hash both sides compare is still the image's, uncompressed (a file is
// compressed once and kept for the next unit: updates/client/gzip-cache.ts).
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import { pipeline, Readable, Transform } from "node:stream";
import { pipeline as pipelineAsync } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { Rtr7Error, describeError, isRtr7Error } from "../../lib/errors.js";
import { formatBytes } from "../../lib/log.js";
import { updateHashHeader, type UpdateHash, type UploadTarget } from "../../lib/wire/update-protocol.js";
import { where, type UnitContext } from "./context.js";
import { createStreamHash } from "../../lib/disk/hash.js";
import { compressedFile } from "./gzip-cache.js";
import { readText } from "./transport.js";
import { unitAnswerError } from "./unit-errors.js";

/** What to send: a file, or a readable of a known size (sent once; a busy unit is not retried after a byte was read). */
export type UploadSource = string | { stream: Readable; size: number; name?: string };

export interface StreamOptions {
  /** Bytes handed to the network so far, of the source's size. */
  onProgress?: (sentBytes: number, totalBytes: number) => void;
  /** How long to keep asking a busy unit (409) before giving up; default 90 s. */
  busyRetryMs?: number;
}

export interface StreamResult {
  bytes: number;
  /** Lowercase hex, as the unit confirmed it. */
  hash: string;
  algorithm: UpdateHash;
  ms: number;
}

export interface UploadSettings {
  hash: UpdateHash;
  /** Pause between two attempts at a busy unit. */
  busyRetryIntervalMs: number;
  /** Read size of file sources. */
  chunkBytes: number;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  /** Targets sent gzip'd (the unit listed the `gzip` feature); default none. */
  gzipTargets?: ReadonlySet<UploadTarget>;
}

interface Opened {
  stream: Readable;
  /** The request body already gzip'd (a cached boot image), when it is. */
  gzipped?: Buffer;
  /** The source, for messages. */
  what: string;
  /** Bytes that passed into the request so far, and their hash. */
  counted: { bytes: number; hex(): string };
}

export async function streamTo(
  unit: UnitContext,
  settings: UploadSettings,
  target: UploadTarget,
  source: UploadSource,
  options: StreamOptions = {},
): Promise<StreamResult> {
  const { size, name, open } = await describeSource(target, source, settings);
  const busyRetryMs = options.busyRetryMs ?? 90_000;
  const giveUpAt = settings.now() + busyRetryMs;
  for (let attempt = 1; ; attempt += 1) {
    const opened = open();
    try {
      return await streamOnce(unit, settings, target, name, size, opened, options);
    } catch (error) {
      // The transport passes the source's own errors through: a file that could not be read.
      if (!isRtr7Error(error))
        throw new Rtr7Error(
          "RTR7_ERR_FILE_MISSING",
          `push ${target}: reading ${opened.what} failed: ${describeError(error)}`,
          {
            cause: error,
          },
        );
      if (error.code !== "RTR7_ERR_UPDATE_BUSY") throw error;
      const again = typeof source === "string" || opened.counted.bytes === 0;
      if (!again || settings.now() + settings.busyRetryIntervalMs > giveUpAt)
        throw new Rtr7Error(
          "RTR7_ERR_UPDATE_BUSY",
          `${error.message}; still busy after ${attempt} attempts over ${Math.round(busyRetryMs / 1000)} s`,
          { cause: error },
        );
      unit.log.info(
        { target, attempt },
        `The unit is busy with another update; asking again in ${(settings.busyRetryIntervalMs / 1000).toFixed(0)} s.`,
      );
      await settings.sleep(settings.busyRetryIntervalMs);
    }
  }
}

async function describeSource(
  target: UploadTarget,
  source: UploadSource,
  settings: UploadSettings,
): Promise<{ size: number; name: string; open: () => Opened }> {
  if (typeof source !== "string") {
    let used = false;
    return {
      size: source.size,
      name: source.name ?? `${target} stream`,
      open: () => {
        if (used) throw new Rtr7Error("RTR7_ERR_INTERNAL", `push ${target}: a stream source is sent once`);
        used = true;
        return counting(source.stream, source.size, `the ${target} stream`, settings.hash);
      },
    };
  }
  const info = await stat(source).catch((error: unknown) => {
    throw new Rtr7Error(
      "RTR7_ERR_FILE_MISSING",
      `push ${target}: cannot read ${source}: ${describeError(error)}`,
      {
        cause: error,
      },
    );
  });
  if (!info.isFile())
    throw new Rtr7Error("RTR7_ERR_FILE_MISSING", `push ${target}: ${source} is not a regular file`);
  const size = info.size;
  if (settings.gzipTargets?.has(target)) {
    const compressed = await compressedFile(source, info, settings.hash);
    return {
      size,
      name: path.basename(source),
      open: () => ({
        stream: Readable.from([]),
        gzipped: compressed.body,
        what: source,
        counted: { bytes: compressed.bytes, hex: () => compressed.hex },
      }),
    };
  }
  return {
    size,
    name: path.basename(source),
    open: () => {
      const file =
        size === 0
          ? Readable.from([])
          : createReadStream(source, { highWaterMark: settings.chunkBytes, start: 0, end: size - 1 });
      return counting(file, size, source, settings.hash);
    },
  };
}

/** The source piped through a hash of what it yields, which must be exactly `size` bytes. */
function counting(input: Readable, size: number, what: string, algorithm: UpdateHash): Opened {
  const hasher = createStreamHash(algorithm);
  const counted = { bytes: 0, hex: () => hasher.hex() };
  const changed = (got: string) =>
    new Rtr7Error("RTR7_ERR_FILE_MISSING", `${what} changed while being sent (${got} of ${size} bytes)`);
  const hashing = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      counted.bytes += chunk.length;
      if (counted.bytes > size) return callback(changed(`more than ${counted.bytes}`));
      hasher.update(chunk);
      callback(null, chunk);
    },
    flush(callback) {
      callback(counted.bytes === size ? null : changed(`read ${counted.bytes}`));
    },
  });
  // Destroying the end of the pipeline (a refusal, a timeout) closes the source too.
  const stream = pipeline(input, hashing, () => undefined);
  return { stream, counted, what };
}

async function streamOnce(
  unit: UnitContext,
  settings: UploadSettings,
  target: UploadTarget,
  name: string,
  size: number,
  opened: Opened,
  options: StreamOptions,
): Promise<StreamResult> {
  const started = performance.now();
  const gzip = settings.gzipTargets?.has(target) ?? false;
  let request = { stream: opened.stream, size };
  if (gzip) {
    // Compressed whole first (level 1: the empty FAT shrinks a thousandfold,
    // fast): Content-Length then counts what goes over the wire.
    const compressed = opened.gzipped ?? (await compressAll(opened.stream));
    request = { stream: Readable.from([compressed]), size: compressed.length };
  }
  const step = `PUT /update/${target} (${name}, ${formatBytes(size)}${gzip ? `, ${formatBytes(request.size)} gzip'd` : ""})`;
  const response = await unit.transport({
    host: unit.host,
    port: unit.ports.update,
    tls: unit.tls,
    method: "PUT",
    path: `/update/${target}`,
    step,
    headers: {
      authorization: unit.authorization,
      accept: "application/json",
      "content-type": "application/octet-stream",
      ...(settings.hash === "crc32" ? { [updateHashHeader]: "crc32" } : {}),
      ...(gzip ? { "content-encoding": "gzip" } : {}),
    },
    body: request,
    expectContinue: true,
    idleTimeoutMs: unit.idleTimeoutMs,
    onSent: (sent) => options.onProgress?.(gzip ? Math.round((sent / request.size) * size) : sent, size),
  });
  const contentType = response.headers["content-type"];
  const body = await readText(response);
  const at = where(unit);
  if (response.status !== 200)
    throw unitAnswerError(at, step, response.status, contentType, body, unit.secrets);
  const reply = body.trim().toLowerCase();
  if (reply.startsWith("<!doctype html>"))
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_REQUEST",
      `${step} to ${at}: the unit does not implement this upload (it answered with an HTML page)`,
    );
  if (opened.counted.bytes !== size)
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_TRUNCATED",
      `${step} to ${at}: the unit answered 200 after ${opened.counted.bytes} of ${size} bytes`,
    );
  const sent = opened.counted.hex();
  if (reply !== sent)
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_HASH",
      `${step} to ${at}: the unit reports ${settings.hash} ${JSON.stringify(reply.slice(0, 200))} for what it wrote, want ${sent} (the hash of what was sent)`,
    );
  const ms = performance.now() - started;
  unit.log.debug(
    { event: "pushed", bytes: size, hash: sent, ms },
    `${step}: ${settings.hash} ${sent} confirmed`,
  );
  return { bytes: size, hash: sent, algorithm: settings.hash, ms };
}

async function compressAll(source: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipelineAsync(source, createGzip({ level: 1 }), async (compressed: AsyncIterable<Buffer>) => {
    for await (const chunk of compressed) chunks.push(chunk);
  });
  return Buffer.concat(chunks);
}
