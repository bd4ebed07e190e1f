// The uplink's HTTPS: a release's manifest and signature, its images (a cut
// download resumed with `Range: bytes=N-`, the server's 206 and
// Content-Range checked, so the bytes go on from where they stopped and
// the sink sees one continuous stream), and the backup upload. A release
// with `tlsFingerprint` is reached over pinned-tls.ts's checked socket;
// any other through the system's CAs. Failures are RTR7_ERR_UPLINK_DOWNLOAD
// (or the pin's RTR7_ERR_UPLINK_TLS).
import { createHash } from "node:crypto";
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import { pipeline, type Readable } from "node:stream";
import { Rtr7Error, describeError, isRtr7Error } from "../../lib/errors.js";
import type { ManifestImage } from "../../lib/wire/manifest.js";
import type { ImageSink } from "./installer.js";
import { pinnedTlsConnect } from "./pinned-tls.js";

export interface RequestOptions {
  method?: "GET" | "PUT";
  headers?: Record<string, string>;
  /** Pin the server's certificate (release.tlsFingerprint); else the system's CAs. */
  fingerprint?: string;
  body?: Readable;
  /** A response that sends nothing for this long is cut (default 60 s). */
  idleMs?: number;
}

function downloadError(message: string, cause?: unknown): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_UPLINK_DOWNLOAD", message, cause === undefined ? {} : { cause });
}

export async function httpsRequest(url: URL, options: RequestOptions = {}): Promise<IncomingMessage> {
  if (url.protocol !== "https:") throw downloadError(`${url.href}: the uplink fetches only https URLs`);
  const port = url.port === "" ? 443 : Number(url.port);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const base = {
    method: options.method ?? "GET",
    host,
    port,
    path: `${url.pathname}${url.search}`,
    headers: { ...options.headers, host: url.host },
  };
  let request: http.ClientRequest;
  if (options.fingerprint !== undefined) {
    const socket = await pinnedTlsConnect({ host, port, fingerprint: options.fingerprint });
    request = http.request({ ...base, createConnection: () => socket });
  } else {
    request = https.request({ ...base, servername: host });
  }
  const idleMs = options.idleMs ?? 60_000;
  return new Promise((resolve, reject) => {
    request.setTimeout(idleMs, () => request.destroy(new Error(`nothing for ${idleMs} ms`)));
    request.once("error", reject);
    request.once("response", (response) => {
      response.setTimeout(idleMs, () => response.destroy(new Error(`nothing for ${idleMs} ms`)));
      resolve(response);
    });
    if (options.body) pipeline(options.body, request, () => undefined);
    else request.end();
  });
}

/** A small file (manifest.json, its signature) whole, at most `limit` bytes. */
export async function fetchSmall(url: URL, fingerprint: string | undefined, limit: number): Promise<Buffer> {
  let response: IncomingMessage;
  try {
    response = await httpsRequest(url, fingerprint === undefined ? {} : { fingerprint });
  } catch (error) {
    if (isRtr7Error(error)) throw error;
    throw downloadError(`GET ${url.href}: ${describeError(error)}`, error);
  }
  if (response.statusCode !== 200) {
    response.resume();
    throw downloadError(`GET ${url.href}: HTTP ${response.statusCode ?? "?"}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      response.destroy();
      throw downloadError(`GET ${url.href}: more than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export interface DownloadOptions {
  url: URL;
  image: ManifestImage;
  fingerprint?: string;
  sink: ImageSink;
  /** Cut connections retried in a row without a byte of progress (default 5). */
  maxRetries?: number;
  retryDelayMs?: number;
  onProgress?: (bytesDone: number) => void;
  /** Each retry, with the offset it resumes from. */
  onResume?: (offset: number, why: string) => void;
  idleMs?: number;
}

function checkResumed(response: IncomingMessage, offset: number, size: number, href: string): void {
  const range = response.headers["content-range"];
  if (response.statusCode !== 206 || range !== `bytes ${offset}-${size - 1}/${size}`)
    throw downloadError(
      `GET ${href} with Range: bytes=${offset}-: HTTP ${response.statusCode ?? "?"}, Content-Range ${JSON.stringify(range)}; the server did not resume where the cut left off (want 206, bytes ${offset}-${size - 1}/${size})`,
    );
}

/**
 * Streams one image into its sink, resuming after a cut with Range from the
 * byte it stopped at, and checks its size and SHA-256 against the manifest's
 * entry; the sink is finished only when both hold.
 */
export async function downloadImage(options: DownloadOptions): Promise<void> {
  const { url, image, sink } = options;
  const maxRetries = options.maxRetries ?? 5;
  const hash = createHash("sha256");
  let done = 0;
  let failures = 0;
  for (;;) {
    const before = done;
    let cut: unknown;
    try {
      const response = await httpsRequest(url, {
        ...(options.fingerprint === undefined ? {} : { fingerprint: options.fingerprint }),
        ...(done > 0 ? { headers: { range: `bytes=${done}-` } } : {}),
        ...(options.idleMs === undefined ? {} : { idleMs: options.idleMs }),
      });
      if (done > 0) checkResumed(response, done, image.size, url.href);
      else if (response.statusCode !== 200) {
        response.resume();
        throw downloadError(`GET ${url.href}: HTTP ${response.statusCode ?? "?"}`);
      }
      try {
        for await (const chunk of response) {
          const bytes = chunk as Buffer;
          if (done + bytes.length > image.size) {
            response.destroy();
            throw downloadError(`GET ${url.href}: more than the manifest's ${image.size} bytes`);
          }
          await sink.write(bytes);
          hash.update(bytes);
          done += bytes.length;
          options.onProgress?.(done);
        }
      } catch (error) {
        if (isRtr7Error(error)) throw error;
        cut = error;
      }
    } catch (error) {
      if (isRtr7Error(error)) throw error;
      cut = error;
    }
    if (done === image.size) break;
    failures = done > before ? 1 : failures + 1;
    const why = cut === undefined ? `ended after ${done} of ${image.size} bytes` : describeError(cut);
    if (failures > maxRetries)
      throw downloadError(`GET ${url.href}: ${why}, and ${maxRetries} retries made no progress`, cut);
    options.onResume?.(done, why);
    await new Promise((resolve) => setTimeout(resolve, (options.retryDelayMs ?? 1000) * failures));
  }
  const sha256 = hash.digest("hex");
  if (sha256 !== image.sha256)
    throw downloadError(`${image.name}: SHA-256 ${sha256}, but the signed manifest says ${image.sha256}`);
}

/** PUT of a stream (the backup) with basic auth; resolves on a 2xx. */
export async function putStream(
  url: URL,
  body: Readable,
  auth: { username: string; password: string },
  fingerprint?: string,
): Promise<void> {
  const authorization = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString("base64")}`;
  let response: IncomingMessage;
  try {
    response = await httpsRequest(url, {
      method: "PUT",
      headers: { authorization, "content-type": "application/gzip" },
      body,
      ...(fingerprint === undefined ? {} : { fingerprint }),
    });
  } catch (error) {
    throw downloadError(`PUT ${url.href}: ${describeError(error)}`, error);
  }
  response.resume();
  const status = response.statusCode ?? 0;
  if (status < 200 || status >= 300) throw downloadError(`PUT ${url.href}: HTTP ${status}`);
}
