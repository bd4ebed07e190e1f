// The one error catalogue of rtr7. Every error a user can act on is an
// Rtr7Error with a stable code from this table; the message says what failed
// (operation, input, got/want) and the hint says what to do about it. Callers
// tell errors apart by `code` (or `instanceof`), never by message text.
// Each entry also carries the HTTP status a server of rtr7 answers the error
// with (lib/http-error.ts writes the one error body, {code, message, hint}),
// so the catalogue is the wire contract as well: a client reads the code back
// from the body, and the status alone still means what the catalogue says.
// docs/errors.md documents every code and its status; a unit test keeps the
// two in step. The entries are in lib/error-catalogue.ts.
import { errorCatalogue } from "./error-catalogue.js";

export { errorCatalogue, type CatalogueEntry } from "./error-catalogue.js";

export type ErrorCode = keyof typeof errorCatalogue;

export interface Rtr7ErrorOptions {
  cause?: unknown;
  /** Overrides the catalogue's hint where the thrower knows better. */
  hint?: string;
}

export class Rtr7Error extends Error {
  readonly code: ErrorCode;
  readonly hint: string;

  /** The HTTP status a server answers this error with: the catalogue's, for its code. */
  get httpStatus(): number {
    return errorCatalogue[this.code].status;
  }

  constructor(code: ErrorCode, message: string, options: Rtr7ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "Rtr7Error";
    this.code = code;
    this.hint = options.hint ?? errorCatalogue[code].hint;
  }
}

export function isRtr7Error(error: unknown, code?: ErrorCode): error is Rtr7Error {
  return error instanceof Rtr7Error && (code === undefined || error.code === code);
}

/** A short description of any thrown value, for logs. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
