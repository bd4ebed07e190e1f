// Durations as people type them on a command line: "90s", "10m", "1h30m",
// "2m" or a bare number of seconds.
import { Rtr7Error } from "./errors.js";

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string, flag: string): number {
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const parts = [...trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join("") !== trimmed) {
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `${flag} ${JSON.stringify(text)}: want a duration such as 90s, 10m or 1h30m`,
    );
  }
  return Math.round(
    parts.reduce((total, part) => total + Number(part[1]) * (units[part[2] as string] ?? 0), 0),
  );
}
