// /health.json as diagd serves it (port 7733) and as safe-update and the
// fleet commands read it. router7's diagd answers {"first_error": ""} when
// healthy; rtr7 adds who is answering and the checks behind the verdict.
import { Rtr7Error } from "../errors.js";

export interface HealthCheck {
  /** "link lan0", "address lan0", "gateway 10.0.0.1", "tcp 192.0.2.1:80". */
  name: string;
  status: "ok" | "failed" | "skipped";
  /** Why it failed or was skipped, or what was seen ("up, 1000 Mb/s"). */
  detail: string;
  ms: number;
}

export interface HealthReport {
  /** Empty when healthy; otherwise the first failed check's name and detail. */
  first_error: string;
  hostname: string;
  version: string;
  slot: "a" | "b";
  /** True while the running slot is on trial (testboot, not yet committed). */
  trial: boolean;
  uptime_seconds: number;
  checks: HealthCheck[];
}

export function isHealthy(report: Pick<HealthReport, "first_error">): boolean {
  return report.first_error === "";
}

/** A loose structural check of a report read from the network; RTR7_ERR_HEALTH_REPORT when it fails. */
export function parseHealthReport(value: unknown): HealthReport {
  const record = value as Partial<HealthReport> | null;
  if (!record || typeof record.first_error !== "string")
    throw new Rtr7Error(
      "RTR7_ERR_HEALTH_REPORT",
      `health report: want an object with a first_error string, got ${describeValue(value)}`,
    );
  return {
    first_error: record.first_error,
    hostname: typeof record.hostname === "string" ? record.hostname : "",
    version: typeof record.version === "string" ? record.version : "",
    slot: record.slot === "b" ? "b" : "a",
    trial: record.trial === true,
    uptime_seconds: typeof record.uptime_seconds === "number" ? record.uptime_seconds : 0,
    checks: Array.isArray(record.checks) ? record.checks : [],
  };
}

/** What a value that is not a report was, briefly, for the error message. */
function describeValue(value: unknown): string {
  if (value === null || typeof value !== "object")
    return JSON.stringify(value)?.slice(0, 80) ?? String(value);
  if (Array.isArray(value)) return "an array";
  const firstError = (value as { first_error?: unknown }).first_error;
  return firstError === undefined
    ? "an object without first_error"
    : `first_error ${JSON.stringify(firstError)}`;
}
