// The workstation's client of a unit's services: the update API (gokrazy's
// protocol, port 80), diagd's /health.json (7733) and backupd's
// /backup.tar.gz (8077). Written on node:http rather than fetch so an upload
// streams from the file with its Content-Length and backpressure, and so a
// stalled connection (a cut cable keeps TCP retrying for minutes) can be
// told from a slow one: every transfer has an idle timer that any progress
// resets, and small requests an overall bound.
//
// Uploads follow gokrazy's updater: the hash of what is sent (SHA-256, or
// CRC-32 when the unit lists `updatehash`) must equal the unit's reply.
// They ask `Expect: 100-continue`, so a unit that refuses (401, 409 busy)
// does so before any byte of the image is sent; a busy unit is asked again
// every couple of seconds for a while, since a unit whose previous upload
// connection died holds its lock until its own idle timeout. Credentials go
// in the Authorization header only, and never into a log or an error.
import { createReadStream, type ReadStream } from "node:fs";
import { open, rename, rm, stat } from "node:fs/promises";
import http, { type IncomingMessage } from "node:http";
import { createHash, randomBytes } from "node:crypto";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { crc32 } from "node:zlib";
import { createWriteStream } from "node:fs";
import { Rtr7Error, describeError, isRtr7Error } from "../../lib/errors.js";
import { formatBytes, silentLogger, type Logger } from "../../lib/log.js";
import { parseHealthReport, type HealthReport } from "../../lib/wire/health.js";
import { verifyBackup } from "../backup-check.js";
import { hostPort, unitAnswerError, unreachableError } from "./unit-errors.js";

export interface UnitEndpoint {
  host: string;
  /** The update API's port (80 on a unit). */
  port: number;
  /** diagd's port, default 7733. */
  diagdPort?: number;
  /** backupd's port, default 8077. */
  backupdPort?: number;
}

export type UploadTarget = "root" | "boot" | "bootonly" | "mbr";
export type UpdateHash = "sha256" | "crc32";

export interface UnitFeatures {
  /** The unit's answer to GET /update/features ("" when it has no such endpoint). */
  raw: string;
  /** The hash uploads use: crc32 when the unit lists `updatehash`, as gokrazy's updater does. */
  hash: UpdateHash;
  partuuid: boolean;
}

export interface PushOptions {
  hash: UpdateHash;
  /** Bytes handed to the network so far, of the file's size. */
  onProgress?: (sentBytes: number, totalBytes: number) => void;
  /** How long to keep asking a busy unit (409) before giving up; default 90 s. */
  busyRetryMs?: number;
}

export interface PushResult {
  bytes: number;
  /** Lowercase hex, as the unit confirmed it. */
  hash: string;
  ms: number;
}

export interface UpdateClientOptions {
  endpoint: UnitEndpoint;
  password: string;
  log?: Logger;
  /** Bound on a small request (features, switch, testboot, commit, reboot); default 30 s. */
  requestTimeoutMs?: number;
  /** An upload or download that makes no progress for this long fails; default 30 s. */
  idleTimeoutMs?: number;
  /** Pause between two attempts at a busy unit; default 2 s. */
  busyRetryIntervalMs?: number;
  /** Read size of uploads; default 4 MiB. */
  chunkBytes?: number;
  /** How long to wait for "100 Continue" before sending the body anyway; default 2 s. */
  continueTimeoutMs?: number;
}

interface Reply {
  status: number;
  contentType: string | undefined;
  body: string;
}

const maxReplyBytes = 1024 * 1024;

/** Calls `onIdle` when `touch` has not been called for `ms`. */
class IdleWatch {
  private readonly timer: NodeJS.Timeout;

  constructor(ms: number, onIdle: () => void) {
    this.timer = setTimeout(onIdle, ms);
  }

  touch(): void {
    this.timer.refresh();
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}

/** An incremental hash of the given algorithm, as gokrazy prints it (lowercase hex). */
function updateHasher(algorithm: UpdateHash): { update(chunk: Buffer): void; hex(): string } {
  if (algorithm === "sha256") {
    const hash = createHash("sha256");
    let digest: string | undefined;
    return { update: (chunk) => hash.update(chunk), hex: () => (digest ??= hash.digest("hex")) };
  }
  let value = 0;
  return {
    update: (chunk) => (value = crc32(chunk, value)),
    hex: () => value.toString(16).padStart(8, "0"),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class UpdateClient {
  private readonly endpoint: Required<UnitEndpoint>;
  private readonly authorization: string;
  private readonly log: Logger;
  private readonly requestTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly busyRetryIntervalMs: number;
  private readonly chunkBytes: number;
  private readonly continueTimeoutMs: number;

  constructor(options: UpdateClientOptions) {
    this.endpoint = { diagdPort: 7733, backupdPort: 8077, ...options.endpoint };
    this.authorization = `Basic ${Buffer.from(`gokrazy:${options.password}`).toString("base64")}`;
    this.log = (options.log ?? silentLogger()).child({
      subsystem: "update-client",
      peer: hostPort(options.endpoint.host, options.endpoint.port),
    });
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
    this.busyRetryIntervalMs = options.busyRetryIntervalMs ?? 2000;
    this.chunkBytes = options.chunkBytes ?? 4 * 1024 * 1024;
    this.continueTimeoutMs = options.continueTimeoutMs ?? 2000;
  }

  private where(port = this.endpoint.port): string {
    return hostPort(this.endpoint.host, port);
  }

  /** A transfer that made no progress for the idle timeout (a cut cable, a hung unit). */
  private stalled(where: string, step: string, doneSoFar: string): Error {
    return unreachableError(
      where,
      step,
      new Error(`no progress for ${(this.idleTimeoutMs / 1000).toFixed(1)} s after ${doneSoFar}`),
    );
  }

  /** GET /update/features: which hash uploads use, and whether the unit knows PARTUUID. */
  async features(): Promise<UnitFeatures> {
    const step = "GET /update/features";
    const reply = await this.exchange({ method: "GET", path: "/update/features", step, json: false });
    // A unit without the endpoint supports no optional feature (gokrazy's updater does the same).
    if (reply.status === 404) return { raw: "", hash: "sha256", partuuid: false };
    if (reply.status !== 200)
      throw unitAnswerError(this.where(), step, reply.status, reply.contentType, reply.body);
    const raw = reply.body.trim();
    const listed = raw.split(",").map((feature) => feature.trim());
    return {
      raw,
      hash: listed.includes("updatehash") ? "crc32" : "sha256",
      partuuid: listed.includes("partuuid"),
    };
  }

  /**
   * PUT /update/<target> with the file, hash-verified against the unit's
   * reply. Retries while the unit is busy, for up to busyRetryMs.
   */
  async push(target: UploadTarget, file: string, options: PushOptions): Promise<PushResult> {
    const info = await stat(file).catch((error: unknown) => {
      throw new Rtr7Error(
        "RTR7_ERR_FILE_MISSING",
        `push ${target}: cannot read ${file}: ${describeError(error)}`,
        {
          cause: error,
        },
      );
    });
    if (!info.isFile())
      throw new Rtr7Error("RTR7_ERR_FILE_MISSING", `push ${target}: ${file} is not a regular file`);
    const size = info.size;
    const busyRetryMs = options.busyRetryMs ?? 90_000;
    const giveUpAt = Date.now() + busyRetryMs;
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.pushOnce(target, file, size, options);
      } catch (error) {
        if (!isRtr7Error(error, "RTR7_ERR_UPDATE_BUSY")) throw error;
        if (Date.now() + this.busyRetryIntervalMs > giveUpAt)
          throw new Rtr7Error(
            "RTR7_ERR_UPDATE_BUSY",
            `${error.message}; still busy after ${attempt} attempts over ${Math.round(busyRetryMs / 1000)} s`,
            { cause: error },
          );
        this.log.info(
          { target, attempt },
          `The unit is busy with another update; asking again in ${(this.busyRetryIntervalMs / 1000).toFixed(0)} s.`,
        );
        await sleep(this.busyRetryIntervalMs);
      }
    }
  }

  private pushOnce(
    target: UploadTarget,
    file: string,
    size: number,
    options: PushOptions,
  ): Promise<PushResult> {
    const step = `PUT /update/${target} (${path.basename(file)}, ${formatBytes(size)})`;
    const where = this.where();
    const hasher = updateHasher(options.hash);
    const started = performance.now();

    return new Promise<PushResult>((resolve, reject) => {
      let settled = false;
      let sending = false;
      let readBytes = 0;
      let sentBytes = 0;
      let response: IncomingMessage | undefined;
      let source: ReadStream | undefined;

      const settle = (error: Error | undefined, result?: PushResult): void => {
        if (settled) return;
        settled = true;
        watch.stop();
        clearTimeout(continueFallback);
        source?.destroy();
        request.destroy();
        if (error) reject(error);
        else resolve(result as PushResult);
      };
      const watch = new IdleWatch(this.idleTimeoutMs, () =>
        settle(this.stalled(where, step, `${formatBytes(sentBytes)} of ${formatBytes(size)} were sent`)),
      );

      const request = http.request({
        host: this.endpoint.host,
        port: this.endpoint.port,
        method: "PUT",
        path: `/update/${target}`,
        agent: false,
        headers: {
          authorization: this.authorization,
          accept: "application/json",
          "content-type": "application/octet-stream",
          "content-length": String(size),
          expect: "100-continue",
          ...(options.hash === "crc32" ? { "x-gokrazy-update-hash": "crc32" } : {}),
        },
      });

      const sendBody = (): void => {
        if (sending || settled || response) return;
        sending = true;
        clearTimeout(continueFallback);
        watch.touch();
        if (size === 0) {
          request.end();
          return;
        }
        source = createReadStream(file, { highWaterMark: this.chunkBytes, start: 0, end: size - 1 });
        source.on("data", (data: string | Buffer) => {
          const chunk = data as Buffer;
          readBytes += chunk.length;
          const more = request.write(chunk, (error) => {
            if (error || settled) return;
            sentBytes += chunk.length;
            watch.touch();
            options.onProgress?.(sentBytes, size);
          });
          // Hashed while the kernel sends what it was just given.
          hasher.update(chunk);
          if (!more) source?.pause();
        });
        request.on("drain", () => source?.resume());
        source.on("end", () => {
          if (readBytes !== size)
            return settle(
              new Rtr7Error(
                "RTR7_ERR_FILE_MISSING",
                `${step}: ${file} changed while being sent (read ${readBytes} of ${size} bytes)`,
              ),
            );
          request.end();
        });
        source.on("error", (error) =>
          settle(
            new Rtr7Error("RTR7_ERR_FILE_MISSING", `${step}: reading ${file} failed: ${error.message}`, {
              cause: error,
            }),
          ),
        );
      };
      // Sent once the unit invites the body, or after a pause for one that never does.
      const continueFallback = setTimeout(sendBody, this.continueTimeoutMs);
      request.on("continue", sendBody);
      request.flushHeaders();

      request.on("response", (answer) => {
        response = answer;
        watch.touch();
        // An answer before the whole body was sent is a refusal: stop sending.
        if (readBytes < size) source?.destroy();
        clearTimeout(continueFallback);
        const chunks: Buffer[] = [];
        let length = 0;
        answer.on("data", (chunk: Buffer) => {
          watch.touch();
          if (length < maxReplyBytes) chunks.push(chunk);
          length += chunk.length;
        });
        const finish = (complete: boolean): void => {
          if (settled) return;
          const body = Buffer.concat(chunks).toString("utf8");
          const status = answer.statusCode ?? 0;
          if (status !== 200) {
            settle(unitAnswerError(where, step, status, answer.headers["content-type"], body));
          } else if (!complete) {
            settle(
              unreachableError(
                where,
                step,
                new Error("the connection closed before the unit's answer ended"),
              ),
            );
          } else {
            settle(...this.checkHash(step, body, hasher.hex(), readBytes, size, options.hash, started));
          }
        };
        answer.on("end", () => finish(true));
        // A connection that breaks mid-answer ends in "close" without "end".
        answer.on("error", () => undefined);
        answer.on("close", () => finish(answer.complete));
      });
      request.on("error", (error) => {
        // After an answer has begun, its end (or abort) decides.
        if (response) return;
        settle(unreachableError(where, step, error));
      });
    });
  }

  private checkHash(
    step: string,
    body: string,
    sent: string,
    readBytes: number,
    size: number,
    algorithm: UpdateHash,
    started: number,
  ): [Error | undefined, PushResult?] {
    const reply = body.trim().toLowerCase();
    if (reply.startsWith("<!doctype html>"))
      return [
        new Rtr7Error(
          "RTR7_ERR_UPDATE_REQUEST",
          `${step} to ${this.where()}: the unit does not implement this upload (it answered with an HTML page)`,
        ),
      ];
    if (readBytes !== size)
      return [
        new Rtr7Error(
          "RTR7_ERR_UPDATE_TRUNCATED",
          `${step} to ${this.where()}: the unit answered 200 after ${readBytes} of ${size} bytes`,
        ),
      ];
    if (reply !== sent)
      return [
        new Rtr7Error(
          "RTR7_ERR_UPDATE_HASH",
          `${step} to ${this.where()}: the unit reports ${algorithm} ${JSON.stringify(reply.slice(0, 200))} for what it wrote, want ${sent} (the hash of what was sent)`,
        ),
      ];
    const ms = performance.now() - started;
    this.log.debug(
      { event: "pushed", bytes: size, hash: sent, ms },
      `${step}: ${algorithm} ${sent} confirmed`,
    );
    return [undefined, { bytes: size, hash: sent, ms }];
  }

  /** POST /update/testboot: the next reboot runs the inactive slot once; commit it within the deadline. */
  async testboot(options: { deadlineMs?: number } = {}): Promise<string> {
    let form: string | undefined;
    if (options.deadlineMs !== undefined) {
      if (!Number.isFinite(options.deadlineMs) || options.deadlineMs <= 0)
        throw new Rtr7Error(
          "RTR7_ERR_USAGE",
          `testboot: deadline ${options.deadlineMs} ms: want a positive time`,
        );
      form = new URLSearchParams({ deadline: `${Math.ceil(options.deadlineMs / 1000)}s` }).toString();
    }
    return this.post("/update/testboot", form);
  }

  /** POST /update/switch: the inactive slot becomes the default for good. */
  switchSlot(): Promise<string> {
    return this.post("/update/switch");
  }

  /** POST /update/commit: the running (trial) slot becomes the default. Returns the unit's answer. */
  commit(): Promise<string> {
    return this.post("/update/commit");
  }

  /** POST /reboot, with kexec unless told otherwise. */
  reboot(options: { kexec: boolean }): Promise<string> {
    return this.post("/reboot", options.kexec ? undefined : new URLSearchParams({ kexec: "off" }).toString());
  }

  private async post(route: string, form?: string): Promise<string> {
    const step = `POST ${route}`;
    const reply = await this.exchange({ method: "POST", path: route, step, form, json: true });
    if (reply.status !== 200)
      throw unitAnswerError(this.where(), step, reply.status, reply.contentType, reply.body);
    let text = reply.body.trim();
    if (reply.contentType !== undefined && /\bapplication\/json\b/i.test(reply.contentType)) {
      try {
        const parsed = JSON.parse(reply.body) as { message?: unknown };
        if (typeof parsed.message === "string") text = parsed.message;
      } catch {
        // Keep the text as it came.
      }
    }
    this.log.debug({ event: route }, `${step}: ${text}`);
    return text;
  }

  /** GET /health.json from diagd; undefined when it does not answer in time or answers nonsense. */
  async health(timeoutMs = 2000): Promise<HealthReport | undefined> {
    try {
      const reply = await this.exchange({
        method: "GET",
        path: "/health.json",
        step: "GET /health.json",
        port: this.endpoint.diagdPort,
        timeoutMs,
        json: true,
        authorize: false,
      });
      if (reply.status !== 200) return undefined;
      return parseHealthReport(JSON.parse(reply.body));
    } catch {
      return undefined;
    }
  }

  /**
   * GET /backup.tar.gz from backupd into a temp file next to destination,
   * checked to be a complete gzip tar, then renamed to destination.
   */
  async downloadBackup(
    destination: string,
    onProgress?: (bytes: number) => void,
  ): Promise<{ bytes: number }> {
    const partial = path.join(
      path.dirname(destination),
      `.${path.basename(destination)}.partial-${randomBytes(4).toString("hex")}`,
    );
    try {
      const bytes = await this.download("/backup.tar.gz", this.endpoint.backupdPort, partial, onProgress);
      await verifyBackup(partial);
      await rename(partial, destination);
      this.log.debug(
        { event: "backup", bytes },
        `Saved the backup (${formatBytes(bytes)}) as ${destination}.`,
      );
      return { bytes };
    } finally {
      await rm(partial, { force: true });
    }
  }

  private download(
    route: string,
    port: number,
    file: string,
    onProgress?: (bytes: number) => void,
  ): Promise<number> {
    const where = this.where(port);
    const step = `GET ${route}`;
    return new Promise<number>((resolve, reject) => {
      let settled = false;
      let bytes = 0;
      const settle = (error: Error | undefined): void => {
        if (settled) return;
        settled = true;
        watch.stop();
        request.destroy();
        if (error) reject(error);
        else resolve(bytes);
      };
      const watch = new IdleWatch(this.idleTimeoutMs, () =>
        settle(this.stalled(where, step, formatBytes(bytes))),
      );
      const request = http.get({ host: this.endpoint.host, port, path: route, agent: false });
      request.on("error", (error) => settle(unreachableError(where, step, error)));
      request.on("response", (answer) => {
        watch.touch();
        if (answer.statusCode !== 200) {
          const chunks: Buffer[] = [];
          answer.on("data", (chunk: Buffer) => chunks.length < 64 && chunks.push(chunk));
          answer.on("end", () =>
            settle(
              new Rtr7Error(
                "RTR7_ERR_BACKUP_DOWNLOAD",
                `${step} from ${where}: the unit answered HTTP ${answer.statusCode}: ${Buffer.concat(chunks).toString("utf8").trim().slice(0, 2000)}`,
              ),
            ),
          );
          answer.on("error", (error) => settle(unreachableError(where, step, error)));
          return;
        }
        const count = new Transform({
          transform(chunk: Buffer, _encoding, callback) {
            bytes += chunk.length;
            watch.touch();
            onProgress?.(bytes);
            callback(null, chunk);
          },
        });
        pipeline(answer, count, createWriteStream(file, { highWaterMark: 1024 * 1024 }))
          .then(() => syncFile(file))
          .then(
            () => settle(undefined),
            (error: unknown) => {
              if (isRtr7Error(error)) return settle(error);
              if (!answer.complete)
                return settle(
                  new Rtr7Error(
                    "RTR7_ERR_BACKUP_DOWNLOAD",
                    `${step} from ${where}: the download was cut after ${formatBytes(bytes)} (backupd ends it so when archiving fails)`,
                    { cause: error },
                  ),
                );
              settle(
                new Rtr7Error(
                  "RTR7_ERR_FILE_MISSING",
                  `${step}: writing ${file} failed: ${describeError(error)}`,
                  {
                    cause: error,
                    hint: "Check that the run directory is writable and has room.",
                  },
                ),
              );
            },
          );
      });
    });
  }

  /** One small request, its whole answer read (up to 1 MiB), bounded by timeoutMs. */
  private exchange(options: {
    method: "GET" | "POST";
    path: string;
    step: string;
    port?: number;
    form?: string;
    json: boolean;
    timeoutMs?: number;
    authorize?: boolean;
  }): Promise<Reply> {
    const port = options.port ?? this.endpoint.port;
    const where = this.where(port);
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    return new Promise<Reply>((resolve, reject) => {
      let settled = false;
      const settle = (error: Error | undefined, reply?: Reply): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.destroy();
        if (error) reject(error);
        else resolve(reply as Reply);
      };
      const timer = setTimeout(
        () =>
          settle(
            unreachableError(
              where,
              options.step,
              new Error(`no answer within ${(timeoutMs / 1000).toFixed(1)} s`),
            ),
          ),
        timeoutMs,
      );
      const body = options.form === undefined ? undefined : Buffer.from(options.form);
      const request = http.request({
        host: this.endpoint.host,
        port,
        method: options.method,
        path: options.path,
        agent: false,
        headers: {
          ...(options.authorize === false ? {} : { authorization: this.authorization }),
          ...(options.json ? { accept: "application/json" } : {}),
          ...(body
            ? { "content-type": "application/x-www-form-urlencoded", "content-length": String(body.length) }
            : {}),
        },
      });
      request.on("error", (error) => settle(unreachableError(where, options.step, error)));
      request.on("response", (answer) => {
        const chunks: Buffer[] = [];
        let length = 0;
        answer.on("data", (chunk: Buffer) => {
          length += chunk.length;
          if (length <= maxReplyBytes) chunks.push(chunk);
        });
        answer.on("end", () =>
          settle(undefined, {
            status: answer.statusCode ?? 0,
            contentType: answer.headers["content-type"],
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
        answer.on("error", (error) => settle(unreachableError(where, options.step, error)));
      });
      request.end(body);
    });
  }
}

/** fsync of a file just written, before it is renamed into place. */
async function syncFile(file: string): Promise<void> {
  const handle = await open(file, "r+");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
