// The one HTTP request primitive the unit target uses, with its two timers
// written once: an idle timer that any progress (a byte handed to the
// network, the answer's head, a byte of the answer) resets, so a stalled
// connection (a cut cable keeps TCP retrying for minutes) is told from a
// slow one; and an overall bound for small requests. A body is streamed from
// a readable with its Content-Length and backpressure; with `Expect:
// 100-continue` it is sent only once the unit invites it (or after a short
// pause for one that never does), and an answer that comes first stops it,
// so a refusal (401, 409 busy) costs no byte of an image.
//
// The answer's body is handed back as a stream the caller reads to its end
// or closes; either way the exchange then ends and its socket is destroyed.
// A timer that fires, or a connection that breaks, ends the body with an
// RTR7_ERR_UNIT_UNREACHABLE error naming the address and the step. A
// request with a pin (`tls`) goes over TLS: the connection is opened and its
// certificate compared with the pin first (tls-peer.ts), and only a
// verified socket is handed to node:http, so a wrong certificate costs no
// byte of the request. Tests swap the whole transport, or give the default
// one their own `connect` to count sockets.
import http, { type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import net from "node:net";
import { PassThrough, type Readable } from "node:stream";
import { formatBytes } from "../../lib/log.js";
import { pinnedSocket, type UnitPin } from "./tls-peer.js";
import { hostPort, stalledError, unreachableError } from "./unit-errors.js";

export interface TransportRequest {
  host: string;
  port: number;
  method: "GET" | "PUT" | "POST";
  path: string;
  headers?: Record<string, string>;
  /** A small body, or a stream of exactly `size` bytes. */
  body?: Buffer | { stream: Readable; size: number };
  /** Send `Expect: 100-continue` and hold the body until the unit invites it. */
  expectContinue?: boolean;
  /** The whole exchange, request to the answer's last byte, must end within this. */
  timeoutMs?: number;
  /** The exchange fails when nothing moves either way for this long. */
  idleTimeoutMs?: number;
  /** Bytes of the body handed to the network so far. */
  onSent?: (bytes: number) => void;
  /** Names the exchange in errors: "PUT /update/root (root.img, 300 MiB)". */
  step: string;
  /** Over TLS, to a peer that must present this certificate; absent: plain HTTP. */
  tls?: UnitPin;
}

export interface TransportResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The answer's body: read it to its end, or call close(). */
  body: Readable;
  /** Ends the exchange now (the body unread is dropped). Safe to call more than once. */
  close(): void;
}

/** Sends one request; resolves with the answer's head, or rejects with an Rtr7Error. */
export type Transport = (request: TransportRequest) => Promise<TransportResponse>;

export interface NodeTransportOptions {
  /** How long to wait for "100 Continue" before sending the body anyway; default 2 s. */
  continueTimeoutMs?: number;
  /** Opens the connection (tests count sockets with it); default a new TCP connection per request. */
  connect?: (options: { host: string; port: number }) => net.Socket;
}

/** The idle timer and the overall bound of one exchange. */
class ExchangeTimers {
  private readonly idle: NodeJS.Timeout | undefined;
  private readonly overall: NodeJS.Timeout | undefined;

  constructor(request: TransportRequest, onExpiry: (why: "idle" | "overall", ms: number) => void) {
    const { idleTimeoutMs, timeoutMs } = request;
    if (idleTimeoutMs !== undefined)
      this.idle = setTimeout(() => onExpiry("idle", idleTimeoutMs), idleTimeoutMs);
    if (timeoutMs !== undefined) this.overall = setTimeout(() => onExpiry("overall", timeoutMs), timeoutMs);
  }

  /** Progress: the idle timer starts again. */
  touch(): void {
    this.idle?.refresh();
  }

  stop(): void {
    clearTimeout(this.idle);
    clearTimeout(this.overall);
  }
}

/** The default transport: node:http, one connection per request. */
export function nodeHttpTransport(options: NodeTransportOptions = {}): Transport {
  const continueTimeoutMs = options.continueTimeoutMs ?? 2000;
  return async (request) => {
    if (request.tls === undefined) {
      const { connect } = options;
      return exchange(
        request,
        continueTimeoutMs,
        connect && (() => connect({ host: request.host, port: request.port })),
      );
    }
    const socket = await pinnedSocket({
      host: request.host,
      port: request.port,
      step: request.step,
      timeoutMs: Math.min(request.timeoutMs ?? 30_000, request.idleTimeoutMs ?? 30_000),
      connect: options.connect,
      pin: request.tls,
    });
    return exchange(request, continueTimeoutMs, () => socket);
  };
}

function exchange(
  spec: TransportRequest,
  continueTimeoutMs: number,
  connect: (() => net.Socket) | undefined,
): Promise<TransportResponse> {
  const where = hostPort(spec.host, spec.port);
  const streamed = spec.body !== undefined && !Buffer.isBuffer(spec.body) ? spec.body : undefined;
  const small = Buffer.isBuffer(spec.body) ? spec.body : undefined;
  const size = streamed?.size ?? small?.length ?? 0;

  return new Promise<TransportResponse>((resolve, reject) => {
    let answered = false;
    let ended = false;
    let sending = false;
    let sentBytes = 0;
    /** Bytes given to request.write (sent or still queued). */
    let writtenBytes = 0;
    let body: PassThrough | undefined;
    let continueFallback: NodeJS.Timeout | undefined;

    /** Ends the exchange: timers stopped, body source and socket destroyed. */
    const end = (): void => {
      if (ended) return;
      ended = true;
      timers.stop();
      clearTimeout(continueFallback);
      streamed?.stream.destroy();
      request.destroy();
    };
    /** A failure before the answer rejects; after it, ends the body with the error. */
    const fail = (error: Error): void => {
      if (ended) return;
      if (body) body.destroy(error);
      else {
        end();
        reject(error);
      }
    };
    const timers = new ExchangeTimers(spec, (why, ms) =>
      fail(
        why === "idle"
          ? stalledError(
              where,
              spec.step,
              ms,
              answered ? "the answer began" : `${formatBytes(sentBytes)} of ${formatBytes(size)} were sent`,
            )
          : unreachableError(
              where,
              spec.step,
              new Error(`no answer within ${(ms / 1000).toFixed(1)} s`),
              "timeout",
            ),
      ),
    );

    const headers: Record<string, string> = { ...spec.headers };
    if (spec.body !== undefined) headers["content-length"] = String(size);
    if (spec.expectContinue) headers.expect = "100-continue";
    const request = http.request({
      host: spec.host,
      port: spec.port,
      method: spec.method,
      path: spec.path,
      headers,
      ...(connect ? { createConnection: connect } : { agent: false }),
    });

    const sendBody = (): void => {
      if (sending || ended || answered) return;
      sending = true;
      clearTimeout(continueFallback);
      timers.touch();
      if (!streamed) {
        request.end(small);
        return;
      }
      const source = streamed.stream;
      source.on("data", (chunk: Buffer) => {
        if (ended || answered) return;
        writtenBytes += chunk.length;
        const more = request.write(chunk, (error) => {
          if (error || ended) return;
          sentBytes += chunk.length;
          timers.touch();
          spec.onSent?.(sentBytes);
        });
        if (!more) source.pause();
      });
      request.on("drain", () => source.resume());
      source.on("end", () => {
        if (!ended && !answered) request.end();
      });
    };
    // The source's creator names its own errors (a file that cannot be read),
    // which may come before the body is sent.
    if (streamed) {
      const failed = streamed.stream.errored;
      if (failed) queueMicrotask(() => fail(failed));
      streamed.stream.on("error", (error) => fail(error));
    }
    if (spec.expectContinue) {
      // Sent once the unit invites the body, or after a pause for one that never does.
      continueFallback = setTimeout(sendBody, continueTimeoutMs);
      request.on("continue", sendBody);
      request.flushHeaders();
    } else {
      sendBody();
    }

    request.on("error", (error) => fail(unreachableError(where, spec.step, error)));
    request.on("response", (answer: IncomingMessage) => {
      answered = true;
      timers.touch();
      clearTimeout(continueFallback);
      // An answer before the whole body was sent is a refusal: stop sending.
      if (streamed && writtenBytes < size) streamed.stream.destroy();
      const out = new PassThrough();
      body = out;
      answer.on("data", (chunk: Buffer) => {
        timers.touch();
        if (!out.write(chunk)) answer.pause();
      });
      out.on("drain", () => answer.resume());
      answer.on("end", () => out.end());
      answer.on("error", (error) => fail(unreachableError(where, spec.step, error, "cut")));
      answer.on("close", () => {
        if (!answer.complete)
          fail(
            unreachableError(
              where,
              spec.step,
              new Error("the connection closed before the unit's answer ended"),
              "cut",
            ),
          );
      });
      // Read to its end, or closed: the exchange is over either way.
      out.on("close", end);
      resolve({
        status: answer.statusCode ?? 0,
        headers: answer.headers,
        body: out,
        close: () => out.destroy(),
      });
    });
  });
}

/** Reads a body to its end as text, keeping at most `limit` bytes; always ends the exchange. */
export async function readText(response: TransportResponse, limit = 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of response.body) {
      const data = chunk as Buffer;
      if (length < limit) chunks.push(data.subarray(0, limit - length));
      length += data.length;
    }
  } finally {
    response.close();
  }
  return Buffer.concat(chunks).toString("utf8");
}
