// How the unit target reports what went wrong talking to a unit, as
// Rtr7Errors with stable codes: a network failure (refused, no route, reset,
// stalled) is RTR7_ERR_UNIT_UNREACHABLE naming the address and the step; an
// answer other than 200 becomes a UnitAnswerError carrying the status and
// the unit's own text. rtr7 units answer `Accept: application/json` with
// {"code", "message", "hint"} (earlier ones named the code "error"), whose
// code is kept when it is one of ours; gokrazy units answer plain text, kept
// verbatim. Without a code of ours: 401 is RTR7_ERR_UPDATE_AUTH, 409
// RTR7_ERR_UPDATE_BUSY, another 4xx RTR7_ERR_UPDATE_REQUEST and a 5xx
// RTR7_ERR_UNIT_FAILED. The unit's text is quoted with the credentials
// blotted out, in case a unit (or a proxy) echoes what it was sent.
import { Rtr7Error, describeError, errorCatalogue, type ErrorCode } from "../../lib/errors.js";

/** "10.0.0.2:80", "[fd00::2]:80". */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

const networkReasons: Record<string, string> = {
  ECONNREFUSED: "connection refused (nothing listens there)",
  EHOSTUNREACH: "no route to the host",
  ENETUNREACH: "the network is unreachable",
  EHOSTDOWN: "the host is down",
  ECONNRESET: "the connection was reset",
  ECONNABORTED: "the connection was aborted",
  EPIPE: "the connection was closed while sending",
  ETIMEDOUT: "the connection timed out",
  ENOTFOUND: "the name does not resolve",
  EAI_AGAIN: "the name does not resolve (yet)",
};

/**
 * RTR7_ERR_UNIT_UNREACHABLE, with how the exchange failed: the network
 * refused or broke it, nothing moved for the idle time, the overall bound
 * passed, or the answer was cut short.
 */
export class UnitUnreachableError extends Rtr7Error {
  constructor(
    readonly reason: "network" | "stalled" | "timeout" | "cut",
    message: string,
    cause: unknown,
  ) {
    super("RTR7_ERR_UNIT_UNREACHABLE", message, { cause });
  }
}

/** A network failure of `step` ("PUT /update/root") towards host:port. */
export function unreachableError(
  where: string,
  step: string,
  cause: unknown,
  kind: UnitUnreachableError["reason"] = "network",
): UnitUnreachableError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  const reason = (code !== undefined ? networkReasons[code] : undefined) ?? describeError(cause);
  return new UnitUnreachableError(kind, `${step} to ${where}: ${reason}`, cause);
}

/** A transfer that made no progress for `idleMs` (a cut cable, a hung unit). */
export function stalledError(
  where: string,
  step: string,
  idleMs: number,
  doneSoFar: string,
): UnitUnreachableError {
  const cause = new Error(`no progress for ${(idleMs / 1000).toFixed(1)} s after ${doneSoFar}`);
  return unreachableError(where, step, cause, "stalled");
}

/** `text` with every secret (non-empty) replaced by [redacted]. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret !== "") out = out.split(secret).join("[redacted]");
  return out;
}

/** The unit answered with a status other than 200. */
export class UnitAnswerError extends Rtr7Error {
  constructor(
    code: ErrorCode,
    message: string,
    readonly status: number,
    /** The unit's answer as it sent it (text, or the JSON error's message). */
    readonly unitText: string,
    hint?: string,
  ) {
    super(code, message, hint === undefined ? {} : { hint });
  }
}

function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.hasOwn(errorCatalogue, value);
}

export function unitAnswerError(
  where: string,
  step: string,
  status: number,
  contentType: string | undefined,
  body: string,
  secrets: readonly string[] = [],
): UnitAnswerError {
  let text = redact(body, secrets).trim();
  let unitCode: ErrorCode | undefined;
  let hint: string | undefined;
  if (contentType !== undefined && /\bapplication\/json\b/i.test(contentType)) {
    try {
      const parsed = JSON.parse(redact(body, secrets)) as {
        code?: unknown;
        error?: unknown;
        message?: unknown;
        hint?: unknown;
      };
      if (isErrorCode(parsed.code)) unitCode = parsed.code;
      else if (isErrorCode(parsed.error)) unitCode = parsed.error;
      if (typeof parsed.message === "string") text = parsed.message;
      if (typeof parsed.hint === "string") hint = parsed.hint;
    } catch {
      // Not JSON after all: keep the text as it came.
    }
  }
  let code: ErrorCode;
  if (status === 401) code = "RTR7_ERR_UPDATE_AUTH";
  else if (status === 409 && (unitCode === undefined || unitCode === "RTR7_ERR_UPDATE_BUSY"))
    code = "RTR7_ERR_UPDATE_BUSY";
  else code = unitCode ?? (status >= 500 ? "RTR7_ERR_UNIT_FAILED" : "RTR7_ERR_UPDATE_REQUEST");
  const shown = text === "" ? "(no text)" : text.length > 2000 ? `${text.slice(0, 2000)}...` : text;
  const prefix = unitCode !== undefined && unitCode !== code ? `${unitCode}: ` : "";
  return new UnitAnswerError(
    code,
    `${step} to ${where}: the unit answered HTTP ${status}: ${prefix}${shown}`,
    status,
    text,
    code === "RTR7_ERR_UPDATE_AUTH" ? undefined : hint,
  );
}
