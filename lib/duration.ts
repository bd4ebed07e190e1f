// Durations as people type them on a command line or in a form: "90s",
// "10m", "1h30m", "250ms" or a bare number of seconds. Parsed in one pass
// with a sticky pattern (linear in the input; a global pattern retried at
// every position is quadratic on a long run of digits), and capped in
// length, so a hostile form field costs nothing and is not echoed back.
import { Rtr7Error } from "./errors.js";
import { quoteInput } from "./quote.js";

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Longer than any duration a person types ("1h30m15s500ms" is 13). */
export const maxDurationLength = 32;

export function parseDuration(text: string, flag: string): number {
  const refuse = (): never => {
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `${flag} ${quoteInput(text)}: want a duration such as 90s, 10m or 1h30m`,
    );
  };
  const trimmed = text.trim();
  if (trimmed === "" || trimmed.length > maxDurationLength) refuse();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;
  let total = 0;
  while (part.lastIndex < trimmed.length) {
    const match = part.exec(trimmed);
    if (match === null) return refuse();
    total += Number(match[1]) * (units[match[2] as string] ?? 0);
  }
  return Math.round(total);
}
