// safe-update's health step: the unit target (opened now when the caller
// gave a way to open one) and the unit's own verdict, which must be healthy
// and committed before anything is touched. A unit whose update API does
// not answer is not healthy either; either way nothing was changed.
import { Rtr7Error, isRtr7Error } from "../../lib/errors.js";
import type { HealthReport } from "../../lib/wire/health.js";
import type { UnitTarget } from "../client/index.js";
import type { SafeUpdateOptions } from "../safe-update.js";
import type { WaitTimings } from "./waits.js";

/** The target, opened if need be; a unit whose update API does not answer is not healthy. */
export async function openTarget(options: Pick<SafeUpdateOptions, "unit" | "hostname">): Promise<UnitTarget> {
  if (typeof options.unit !== "function") return options.unit;
  try {
    return await options.unit();
  } catch (error) {
    if (!isRtr7Error(error, "RTR7_ERR_UNIT_UNREACHABLE")) throw error;
    throw new Rtr7Error(
      "RTR7_ERR_UNIT_UNHEALTHY",
      `${options.hostname} does not answer (${error.message}); nothing was changed`,
      { cause: error },
    );
  }
}

export async function checkHealthy(
  unit: UnitTarget,
  hostname: string,
  timings: WaitTimings,
): Promise<HealthReport> {
  const where = `${hostname} (${unit.address})`;
  const before = await unit.health({ timeoutMs: timings.probeTimeoutMs });
  if (!before)
    throw new Rtr7Error(
      "RTR7_ERR_UNIT_UNHEALTHY",
      `${where} does not answer /health.json; nothing was changed`,
    );
  if (before.first_error !== "")
    throw new Rtr7Error(
      "RTR7_ERR_UNIT_UNHEALTHY",
      `${where} is not healthy (${before.first_error}); nothing was changed`,
    );
  if (before.trial)
    throw new Rtr7Error(
      "RTR7_ERR_UNIT_UNHEALTHY",
      `${where} runs slot ${before.slot} (${before.version}) on trial, not committed; nothing was changed`,
      { hint: "Wait for the trial to end (it falls back by itself), or commit it, then update again." },
    );
  return before;
}
