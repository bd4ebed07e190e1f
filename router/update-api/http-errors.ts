// How the update API answers a failure: an HTTP status chosen from the
// error's code (or class), and a body in one of two shapes. gokrazy's
// updater prints a non-200 body verbatim (`body %q`), so by default the body
// is one plain-text line, `RTR7_ERR_CODE: message (hint)`, which reads well
// there and in curl; a client that sends `Accept: application/json` (rtr7's
// own) gets `{"error": code, "message", "hint"}` to branch on the code.
import { Rtr7Error, describeError, type ErrorCode, type Rtr7ErrorOptions } from "../../lib/errors.js";
import { CapacityError } from "./write-target.js";

/** An Rtr7Error that carries its own HTTP status. */
export class HttpRtr7Error extends Rtr7Error {
  constructor(
    readonly status: number,
    code: ErrorCode,
    message: string,
    options: Rtr7ErrorOptions = {},
  ) {
    super(code, message, options);
  }
}

const statusByCode: Partial<Record<ErrorCode, number>> = {
  RTR7_ERR_UPDATE_REQUEST: 400,
  RTR7_ERR_UPDATE_TRUNCATED: 400,
  RTR7_ERR_UPDATE_AUTH: 401,
  RTR7_ERR_UPDATE_BUSY: 409,
  RTR7_ERR_SLOT_INVALID: 409,
};

export function httpStatusFor(error: Rtr7Error): number {
  if (error instanceof HttpRtr7Error) return error.status;
  if (error instanceof CapacityError) return 413;
  return statusByCode[error.code] ?? 500;
}

/**
 * Any thrown value as an Rtr7Error: fastify's own 4xx errors (a malformed
 * Content-Type, say) become RTR7_ERR_UPDATE_REQUEST, anything else
 * RTR7_ERR_INTERNAL; `request` ("PUT /update/root") prefixes their message.
 */
export function asRtr7Error(error: unknown, request: string): Rtr7Error {
  if (error instanceof Rtr7Error) return error;
  const message = `${request}: ${describeError(error)}`;
  const status = (error as { statusCode?: unknown } | undefined)?.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    return new HttpRtr7Error(status, "RTR7_ERR_UPDATE_REQUEST", message, { cause: error });
  }
  return new Rtr7Error("RTR7_ERR_INTERNAL", message, { cause: error });
}

export function wantsJson(accept: string | undefined): boolean {
  return accept !== undefined && /\bapplication\/json\b/i.test(accept);
}

export function errorBody(error: Rtr7Error, json: boolean): { contentType: string; body: string } {
  if (json) {
    return {
      contentType: "application/json; charset=utf-8",
      body: JSON.stringify({ error: error.code, message: error.message, hint: error.hint }),
    };
  }
  return {
    contentType: "text/plain; charset=utf-8",
    body: `${error.code}: ${error.message} (${error.hint})\n`,
  };
}
