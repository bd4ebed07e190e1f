// The one logger of rtr7 (pino), created at the entry point and passed down.
// Every line carries its subsystem (`[dhcp]`, `[tftp]`, `[http]`, ...) and,
// where there is one, the peer. With --json the lines are pino's JSON, one
// event per line, for scripts; otherwise a compact human rendering of the
// same events.
import { pino, type Logger as PinoLogger } from "pino";

export type Logger = PinoLogger;

export interface LoggerOptions {
  /** One JSON object per line instead of human-readable lines. */
  json?: boolean;
  /** pino level: "trace" | "debug" | "info" | "warn" | "error" | "silent". */
  level?: string;
  /** Where lines go; default process.stdout. */
  stream?: { write(line: string): unknown };
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const output = options.stream ?? process.stdout;
  const destination = options.json ? output : new HumanLines(output);
  return pino(
    {
      level: options.level ?? "info",
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/** A logger that drops everything; for tests and library defaults. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

const hiddenFields = new Set(["level", "time", "msg", "subsystem", "peer", "pid", "hostname", "event"]);

/** Renders pino's JSON lines as `HH:MM:SS [subsystem] peer message key=value`. */
class HumanLines {
  constructor(private readonly output: { write(line: string): unknown }) {}

  write(jsonLine: string): void {
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(jsonLine) as Record<string, unknown>;
    } catch {
      this.output.write(jsonLine);
      return;
    }
    this.output.write(formatHumanLine(record) + "\n");
  }
}

export function formatHumanLine(record: Record<string, unknown>): string {
  const time = typeof record.time === "string" ? record.time.slice(11, 19) : "";
  const parts: string[] = [time];
  if (typeof record.subsystem === "string") parts.push(`[${record.subsystem}]`);
  if (record.level === "warn") parts.push("warning:");
  if (record.level === "error" || record.level === "fatal") parts.push("error:");
  if (record.peer !== undefined) parts.push(asText(record.peer));
  if (typeof record.msg === "string") parts.push(record.msg);
  for (const [key, value] of Object.entries(record)) {
    if (hiddenFields.has(key) || value === undefined) continue;
    if (key === "err" && typeof value === "object" && value !== null) {
      const message = (value as { message?: unknown }).message;
      parts.push(`(${String(message)})`);
      continue;
    }
    parts.push(`${key}=${asText(value)}`);
  }
  return parts.filter((part) => part !== "").join(" ");
}

function asText(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint")
    return value.toString();
  return JSON.stringify(value) ?? "undefined";
}
