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
  // Messages are written as whole sentences; the structured fields are for
  // --json. Only a wrapped error's own message is worth adding here.
  const error = record.err as { message?: unknown } | undefined;
  if (error && typeof error === "object" && error.message !== undefined)
    parts.push(`(${asText(error.message)})`);
  return parts.filter((part) => part !== "").join(" ");
}

/** 512 B, 41.4 KiB, 7.9 MiB: byte counts for people. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

function asText(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint")
    return value.toString();
  return JSON.stringify(value) ?? "undefined";
}
