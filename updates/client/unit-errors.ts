// How the update client reports what went wrong talking to a unit, as
// Rtr7Errors with stable codes: a network failure (refused, no route, reset,
// stalled) is RTR7_ERR_UNIT_UNREACHABLE naming the address and the step; an
// answer other than 200 becomes a UnitAnswerError carrying the status and
// the unit's own text. rtr7 units answer `Accept: application/json` with
// {"error": code, "message", "hint"}, whose code is kept when it is one of
// ours; gokrazy units answer plain text, kept verbatim. Without a code of
// ours: 401 is RTR7_ERR_UPDATE_AUTH, 409 RTR7_ERR_UPDATE_BUSY, another 4xx
// RTR7_ERR_UPDATE_REQUEST and a 5xx RTR7_ERR_UNIT_FAILED.
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

/** A network failure of `step` ("PUT /update/root") towards host:port. */
export function unreachableError(where: string, step: string, cause: unknown): Rtr7Error {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  const reason = (code !== undefined ? networkReasons[code] : undefined) ?? describeError(cause);
  return new Rtr7Error("RTR7_ERR_UNIT_UNREACHABLE", `${step} to ${where}: ${reason}`, { cause });
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
): UnitAnswerError {
  let text = body.trim();
  let unitCode: ErrorCode | undefined;
  let hint: string | undefined;
  if (contentType !== undefined && /\bapplication\/json\b/i.test(contentType)) {
    try {
      const parsed = JSON.parse(body) as { error?: unknown; message?: unknown; hint?: unknown };
      if (isErrorCode(parsed.error)) unitCode = parsed.error;
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
