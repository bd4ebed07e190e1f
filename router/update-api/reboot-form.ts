// The form of POST /reboot as gokrazy's tools send it (urlencoded body or
// query; the body wins, as in Go's FormValue): kexec=off to reboot through
// the firmware instead of kexec (on by default), async=true to get the reply
// before the services are stopped, wait_per_signal=<Go duration> for how
// long each stop signal is given. Anything else is refused with a message
// that names the field, rather than silently rebooting some other way.
// POST /update/testboot takes one rtr7 field, deadline=<duration>: how long
// the trial may run uncommitted (gokrazy's clients send no form there).
import { Rtr7Error, describeError } from "../../lib/errors.js";
import { parseDuration } from "../../lib/duration.js";
import { quoteInput } from "../../lib/quote.js";

export interface RebootForm {
  kexec: boolean;
  async: boolean;
  waitPerSignalMs?: number;
}

const known = new Set(["kexec", "async", "wait_per_signal"]);

export function parseRebootForm(query: string, body: string): RebootForm {
  const fields = new URLSearchParams(query);
  for (const [name, value] of new URLSearchParams(body)) fields.set(name, value);
  for (const name of fields.keys()) {
    if (!known.has(name)) {
      throw formError(`unknown field ${quoteInput(name)}; want kexec, async or wait_per_signal`);
    }
  }
  const form: RebootForm = {
    kexec: parseSwitch(fields.get("kexec"), "kexec", true),
    async: parseSwitch(fields.get("async"), "async", false),
  };
  const wait = fields.get("wait_per_signal");
  if (wait !== null && wait !== "") {
    try {
      form.waitPerSignalMs = parseDuration(wait, "wait_per_signal");
    } catch (error) {
      throw formError(describeError(error));
    }
  }
  return form;
}

function parseSwitch(value: string | null, name: string, fallback: boolean): boolean {
  if (value === null || value === "") return fallback;
  const lower = value.toLowerCase();
  if (["on", "true", "1", "yes"].includes(lower)) return true;
  if (["off", "false", "0", "no"].includes(lower)) return false;
  throw formError(`${name}=${quoteInput(value)}: want on or off (true or false)`);
}

function formError(message: string): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_UPDATE_REQUEST", `POST /reboot: ${message}`);
}

/** Bounds of a trial's commit deadline: long enough to boot, short enough to matter. */
export const trialDeadlineBounds = { minMs: 1000, maxMs: 24 * 3600 * 1000 };

/** The deadline=<duration> of POST /update/testboot, or undefined for the default. */
export function parseTestbootForm(query: string, body: string): number | undefined {
  const fields = new URLSearchParams(query);
  for (const [name, value] of new URLSearchParams(body)) fields.set(name, value);
  for (const name of fields.keys()) {
    if (name !== "deadline")
      throw new Rtr7Error(
        "RTR7_ERR_UPDATE_REQUEST",
        `POST /update/testboot: unknown field ${quoteInput(name)}; want deadline`,
      );
  }
  const text = fields.get("deadline");
  if (text === null || text === "") return undefined;
  let ms: number;
  try {
    ms = parseDuration(text, "deadline");
  } catch (error) {
    throw new Rtr7Error("RTR7_ERR_UPDATE_REQUEST", `POST /update/testboot: ${describeError(error)}`);
  }
  if (ms < trialDeadlineBounds.minMs || ms > trialDeadlineBounds.maxMs)
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_REQUEST",
      `POST /update/testboot: deadline=${text} is outside 1s..24h`,
    );
  return ms;
}
