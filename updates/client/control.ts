// The update API's small POSTs: /update/testboot (the next boot tries the
// inactive slot once, with a commit deadline), /update/switch (the inactive
// slot becomes the default for good), /update/commit (the running trial
// slot becomes the default) and /reboot (kexec unless told otherwise). Each
// returns the unit's answer as text: the "message" of a JSON answer, or the
// plain text a gokrazy unit sends.
import { Rtr7Error } from "../../lib/errors.js";
import { smallExchange, where, type UnitContext } from "./context.js";
import { redact, unitAnswerError } from "./unit-errors.js";

export async function post(unit: UnitContext, route: string, form?: Record<string, string>): Promise<string> {
  const step = `POST ${route}`;
  const body = form === undefined ? undefined : Buffer.from(new URLSearchParams(form).toString());
  const reply = await smallExchange(unit, {
    method: "POST",
    path: route,
    step,
    headers: {
      accept: "application/json",
      ...(body ? { "content-type": "application/x-www-form-urlencoded" } : {}),
    },
    ...(body ? { body } : {}),
  });
  if (reply.status !== 200)
    throw unitAnswerError(where(unit), step, reply.status, reply.contentType, reply.body, unit.secrets);
  let text = redact(reply.body, unit.secrets).trim();
  if (reply.contentType !== undefined && /\bapplication\/json\b/i.test(reply.contentType)) {
    try {
      const parsed = JSON.parse(text) as { message?: unknown };
      if (typeof parsed.message === "string") text = parsed.message;
    } catch {
      // Keep the text as it came.
    }
  }
  unit.log.debug({ event: route }, `${step}: ${text}`);
  return text;
}

/** The form of POST /update/testboot: a deadline in whole seconds, rounded up. */
export function testbootForm(deadlineMs: number | undefined): Record<string, string> | undefined {
  if (deadlineMs === undefined) return undefined;
  if (!Number.isFinite(deadlineMs) || deadlineMs <= 0)
    throw new Rtr7Error("RTR7_ERR_USAGE", `testboot: deadline ${deadlineMs} ms: want a positive time`);
  return { deadline: `${Math.ceil(deadlineMs / 1000)}s` };
}
