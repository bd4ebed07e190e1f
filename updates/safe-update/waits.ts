// The waits of safe-update, each a loop of health probes on the injected
// clock: the unit going down after the reboot request (no answer, or an
// answer from a new boot), the new version coming up healthy (or the unit
// falling back to its committed slot by itself, which ends the wait at
// once), and the unit being back on its committed version (a rollback).
import { Rtr7Error } from "../../lib/errors.js";
import type { HealthReport } from "../../lib/wire/health.js";
import type { UnitTarget } from "../client/index.js";
import type { Clock } from "./steps.js";

export interface WaitTimings {
  /** One health probe (router7: 2 s). */
  probeTimeoutMs: number;
  /** How long the unit may take to go down after the reboot request (router7: 30 s). */
  downTimeoutMs: number;
  /** Between probes. */
  pollMs: number;
}

type Prober = Pick<UnitTarget, "health">;

/** Down: no answer, or an answer from a new boot (shorter uptime, or another version, slot or trial state). */
export async function waitForDown(
  unit: Prober,
  before: HealthReport,
  timings: WaitTimings,
  clock: Clock,
): Promise<void> {
  const started = clock.now();
  while (clock.now() - started < timings.downTimeoutMs) {
    const seen = await unit.health({ timeoutMs: timings.probeTimeoutMs });
    if (!seen) return;
    if (seen.version !== before.version || seen.slot !== before.slot || seen.trial !== before.trial) return;
    if (seen.uptime_seconds < before.uptime_seconds) return;
    await clock.sleep(Math.min(timings.pollMs, 250));
  }
  throw new Rtr7Error(
    "RTR7_ERR_UPDATE_FAILED",
    `the unit did not go down within ${Math.round(timings.downTimeoutMs / 1000)} s of the reboot request`,
  );
}

/** Healthy on the new version in the other slot; the time (on the clock) of that answer. */
export async function waitForNewVersion(
  unit: Prober,
  before: HealthReport,
  version: string,
  timeoutMs: number,
  timings: WaitTimings,
  clock: Clock,
): Promise<{ report: HealthReport; at: number }> {
  const started = clock.now();
  let last: HealthReport | undefined;
  while (clock.now() - started < timeoutMs) {
    const seen = await unit.health({ timeoutMs: timings.probeTimeoutMs });
    if (seen) last = seen;
    if (seen && seen.version === version && seen.slot !== before.slot && seen.first_error === "")
      return { report: seen, at: clock.now() };
    if (
      seen &&
      seen.slot === before.slot &&
      !seen.trial &&
      seen.version === before.version &&
      seen.first_error === ""
    )
      throw new Rtr7Error(
        "RTR7_ERR_UPDATE_FAILED",
        `the new version ${version} did not come up: the unit fell back to ${before.version} (slot ${before.slot}) by itself`,
      );
    await clock.sleep(timings.pollMs);
  }
  const seen = last
    ? `it last reported ${last.version} (slot ${last.slot}${last.trial ? ", trial" : ""})${last.first_error ? `: ${last.first_error}` : ", healthy"}`
    : "it never answered";
  throw new Rtr7Error(
    "RTR7_ERR_UPDATE_FAILED",
    `${version} was not healthy within ${Math.round(timeoutMs / 1000)} s; ${seen}`,
  );
}

/** Back on its committed version and slot, not on trial. */
export function isBack(before: HealthReport, seen: HealthReport | undefined): seen is HealthReport {
  return seen !== undefined && seen.version === before.version && seen.slot === before.slot && !seen.trial;
}

/** Waits up to `ms` for the unit to be back and healthy; undefined if it is not. */
export async function waitBack(
  unit: Prober,
  before: HealthReport,
  ms: number,
  timings: WaitTimings,
  clock: Clock,
): Promise<HealthReport | undefined> {
  const started = clock.now();
  while (clock.now() - started < ms) {
    const seen = await unit.health({ timeoutMs: timings.probeTimeoutMs });
    if (isBack(before, seen) && seen.first_error === "") return seen;
    await clock.sleep(timings.pollMs);
  }
  return undefined;
}

/**
 * The soak: the new version must answer healthy, on the same slot and
 * version, until `ms` have passed. An unhealthy answer, another version or
 * slot (a fallback), or no answer for three probes in a row ends it with
 * the reason; a single lost probe is tolerated.
 */
export async function soakHealthy(
  unit: Prober,
  version: string,
  slot: string,
  ms: number,
  timings: WaitTimings,
  clock: Clock,
): Promise<void> {
  const started = clock.now();
  let silent = 0;
  while (clock.now() - started < ms) {
    await clock.sleep(Math.min(timings.pollMs, Math.max(0, ms - (clock.now() - started))));
    const seen = await unit.health({ timeoutMs: timings.probeTimeoutMs });
    const after = `after ${((clock.now() - started) / 1000).toFixed(1)} s of the soak`;
    if (!seen) {
      silent += 1;
      if (silent >= 3) throw new Rtr7Error("RTR7_ERR_UPDATE_FAILED", `${version} stopped answering ${after}`);
      continue;
    }
    silent = 0;
    if (seen.version !== version || seen.slot !== slot)
      throw new Rtr7Error(
        "RTR7_ERR_UPDATE_FAILED",
        `${version} did not stay up ${after}: the unit runs ${seen.version} (slot ${seen.slot})`,
      );
    if (seen.first_error !== "")
      throw new Rtr7Error(
        "RTR7_ERR_UPDATE_FAILED",
        `${version} became unhealthy ${after}: ${seen.first_error}`,
      );
  }
}
