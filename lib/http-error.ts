// How every rtr7 HTTP server answers an error: the recovery server's HTTP
// side, and the unit's update API, diagd and backupd. One shape, so a client
// needs one reader for all of them, and one place that decides the status:
//   status  the catalogue's, for the error's code (lib/errors.ts)
//   body    {"code": "RTR7_ERR_...", "message": "...", "hint": "..."}
//   type    exactly `application/json`, the header gokrazy's updater requires
//           of JSON replies (JSON is UTF-8 by definition, so no charset).
// Anything thrown that is not an Rtr7Error becomes one here: fastify's own
// 4xx errors (a malformed or too large body, a missing route) get the
// matching catalogued code, and everything else RTR7_ERR_INTERNAL. gokrazy's
// updater shows a non-200 body verbatim in its error, where this JSON reads
// as well as a text line would.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Rtr7Error, describeError, errorCatalogue, type ErrorCode } from "./errors.js";
import type { Logger } from "./log.js";

import { jsonContentType } from "./wire/update-protocol.js";

export { jsonContentType };

/** The one error body of rtr7's HTTP servers. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  hint: string;
}

export function errorBody(error: Rtr7Error): ErrorBody {
  return { code: error.code, message: error.message, hint: error.hint };
}

export interface AsRtr7ErrorOptions {
  /** The code for a malformed request (a fastify 4xx); default RTR7_ERR_HTTP_REQUEST. */
  requestCode?: ErrorCode;
}

/**
 * Any thrown value as an Rtr7Error. `request` ("PUT /update/root") prefixes
 * the message of what was not one. fastify's errors are told apart by their
 * statusCode: 404 and 413 have codes of their own; any other 4xx (bad JSON,
 * a failed schema, an unsupported Content-Type) is a malformed request.
 */
export function asRtr7Error(thrown: unknown, request: string, options: AsRtr7ErrorOptions = {}): Rtr7Error {
  if (thrown instanceof Rtr7Error) return thrown;
  const message = `${request}: ${describeError(thrown)}`;
  const status = (thrown as { statusCode?: unknown } | null | undefined)?.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    const code: ErrorCode =
      status === 404
        ? "RTR7_ERR_HTTP_NOT_FOUND"
        : status === 413
          ? "RTR7_ERR_HTTP_TOO_LARGE"
          : (options.requestCode ?? "RTR7_ERR_HTTP_REQUEST");
    return new Rtr7Error(code, message, { cause: thrown });
  }
  return new Rtr7Error("RTR7_ERR_INTERNAL", message, { cause: thrown });
}

/** "GET /health.json", without the query (which may carry a form). */
export function requestLine(request: FastifyRequest): string {
  return `${request.method} ${request.url.split("?")[0] ?? ""}`;
}

export interface ErrorReplyOptions extends AsRtr7ErrorOptions {
  log: Logger;
}

/**
 * Answers `thrown` in the one shape and logs it with the peer: a 5xx as an
 * error with its stack, anything else as a warning. A request whose body was
 * not read to its end gets `Connection: close`, so its unread bytes are never
 * taken for the next request.
 */
export function replyWithError(
  request: FastifyRequest,
  reply: FastifyReply,
  thrown: unknown,
  options: ErrorReplyOptions,
): FastifyReply {
  const error = asRtr7Error(thrown, requestLine(request), options);
  const status = error.httpStatus;
  if (!request.raw.complete) void reply.header("connection", "close");
  const line = { peer: request.ip, method: request.method, url: request.url, status, code: error.code };
  if (status >= 500) options.log.error({ ...line, err: thrown }, `${requestLine(request)}: ${error.message}`);
  else options.log.warn(line, `${requestLine(request)}: ${error.message}`);
  return sendJson(reply.code(status), errorBody(error));
}

/**
 * Sends `value` as JSON with exactly `Content-Type: application/json`. As a
 * Buffer: fastify appends "; charset=utf-8" to a JSON type for anything
 * else, and gokrazy's updater refuses the reply then.
 */
export function sendJson(reply: FastifyReply, value: unknown): FastifyReply {
  return reply.type(jsonContentType).send(Buffer.from(JSON.stringify(value), "utf8"));
}

export interface ErrorHandlerOptions extends ErrorReplyOptions {
  /** Overrides the catalogue's hint for a path that does not exist (a list of what does). */
  notFoundHint?: string;
}

/** Routes a server's thrown errors and unknown paths through replyWithError. */
export function installErrorHandlers(app: FastifyInstance, options: ErrorHandlerOptions): void {
  app.setErrorHandler((error, request, reply) => replyWithError(request, reply, error, options));
  app.setNotFoundHandler((request, reply) =>
    replyWithError(
      request,
      reply,
      new Rtr7Error(
        "RTR7_ERR_HTTP_NOT_FOUND",
        `${requestLine(request)}: no such file or endpoint`,
        options.notFoundHint === undefined ? {} : { hint: options.notFoundHint },
      ),
      options,
    ),
  );
}

/**
 * The error body of a reply, when it is one of rtr7's (for clients): the
 * JSON shape above with a catalogued code; undefined for anything else (a
 * gokrazy unit's text, an HTML page), which the client then shows as it came.
 */
export function parseErrorBody(contentType: string | undefined, text: string): ErrorBody | undefined {
  if (contentType === undefined || !/^application\/json\b/i.test(contentType.trim())) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  const record = parsed as Partial<Record<keyof ErrorBody, unknown>> | null;
  if (
    !record ||
    typeof record.code !== "string" ||
    !Object.hasOwn(errorCatalogue, record.code) ||
    typeof record.message !== "string" ||
    typeof record.hint !== "string"
  )
    return undefined;
  return { code: record.code as ErrorCode, message: record.message, hint: record.hint };
}
