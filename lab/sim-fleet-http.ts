// The HTTP pieces of a simulated unit (lab/sim-fleet-unit.ts), on bare
// node:http: a request body received and hashed (inflated first when it
// came gzip'd, the hash then of the image itself, as the real update API
// answers), a POST's small urlencoded form, the method check with its Allow
// header, and replies: text, JSON with an exact Content-Type, and errors in
// rtr7's one JSON body with the catalogue's status (lib/http-error.ts).
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import { createGunzip, crc32 } from "node:zlib";
import { Rtr7Error, describeError } from "../lib/errors.js";
import { errorBody } from "../lib/http-error.js";
import type { HashAlgorithm } from "../lib/disk/hash.js";
import { jsonContentType } from "../lib/wire/update-protocol.js";

const formLimit = 4096;

/** The body read to its end: its length, SHA-256 and the reply's hash (SHA-256 or CRC-32 hex). */
export async function receiveBody(
  request: IncomingMessage,
  gzipped: boolean,
  algorithm: HashAlgorithm,
  what: string,
): Promise<{ bytes: number; sha256: string; hex: string }> {
  let source: Readable = request;
  if (gzipped) {
    const inflate = createGunzip();
    request.on("aborted", () => inflate.destroy(new Error("the request was aborted")));
    source = request.pipe(inflate);
  }
  const sha = createHash("sha256");
  let crc = 0;
  let bytes = 0;
  try {
    for await (const chunk of source) {
      const data = chunk as Buffer;
      bytes += data.length;
      sha.update(data);
      if (algorithm === "crc32") crc = crc32(data, crc);
    }
  } catch (cause) {
    throw new Rtr7Error("RTR7_ERR_UPDATE_TRUNCATED", `${what}: the upload broke off after ${bytes} bytes`, {
      cause,
    });
  }
  if (!request.complete)
    throw new Rtr7Error("RTR7_ERR_UPDATE_TRUNCATED", `${what}: the upload ended after ${bytes} bytes`);
  const sha256 = sha.digest("hex");
  return { bytes, sha256, hex: algorithm === "crc32" ? crc.toString(16).padStart(8, "0") : sha256 };
}

/** Answers `thrown` in rtr7's one error shape; a reply already under way is cut instead. */
export function sendError(request: IncomingMessage, response: ServerResponse, thrown: unknown): void {
  const error =
    thrown instanceof Rtr7Error
      ? thrown
      : new Rtr7Error("RTR7_ERR_INTERNAL", `${request.method} ${request.url}: ${describeError(thrown)}`);
  if (response.headersSent) {
    response.destroy();
    return;
  }
  // Unread body bytes must never be taken for the next request.
  if (!request.complete) response.setHeader("connection", "close");
  sendJson(response, error.httpStatus, errorBody(error));
}

export function requireMethod(
  request: IncomingMessage,
  response: ServerResponse,
  method: string,
  line: string,
): void {
  if (request.method === method) return;
  response.setHeader("allow", method);
  throw new Rtr7Error("RTR7_ERR_UPDATE_REQUEST", `${line}: expected a ${method} request`);
}

/** A POST's query and, when sent as a urlencoded form, its small body. */
export async function readForm(
  request: IncomingMessage,
  query: string,
  invite: () => void,
  line: string,
): Promise<{ query: string; body: string }> {
  if (!/^application\/x-www-form-urlencoded\b/i.test(request.headers["content-type"] ?? ""))
    return { query, body: "" };
  invite();
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of request) {
    length += (chunk as Buffer).length;
    if (length > formLimit) throw new Rtr7Error("RTR7_ERR_HTTP_TOO_LARGE", `${line}: the form is too large`);
    chunks.push(chunk as Buffer);
  }
  return { query, body: Buffer.concat(chunks).toString("utf8") };
}

export function sendText(response: ServerResponse, status: number, text: string): void {
  const body = Buffer.from(text, "utf8");
  response.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": body.length });
  response.end(body);
}

export function sendJson(
  response: ServerResponse,
  status: number,
  value: unknown,
  type = jsonContentType,
): void {
  const body = Buffer.from(JSON.stringify(value), "utf8");
  response.writeHead(status, { "content-type": type, "content-length": body.length });
  response.end(body);
}
