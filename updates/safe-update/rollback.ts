// Bringing a unit back to its committed version after a failed trial, in
// the order that costs least: a unit already back is left alone; one that
// answers is rebooted into its committed slot (switched back first when the
// switch was permanent, without kexec); one that does not answer is given
// the time its trial's own fallback needs (a panic, or the missed commit
// deadline); one still silent is recovered with the last known-good run's
// images and this run's backup, through the injected recover(). Returns
// what the unit runs now, in words, for the failure message.
import { access } from "node:fs/promises";
import path from "node:path";
import { describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import type { HealthReport } from "../../lib/wire/health.js";
import { imageFiles } from "../../lib/wire/images.js";
import type { UnitTarget } from "../client/index.js";
import { lastKnownGood, type UpdateRun } from "../runs.js";
import type { Recover } from "./recover.js";
import type { Clock } from "./steps.js";
import { isBack, waitBack, type WaitTimings } from "./waits.js";

export interface RollbackContext {
  unit: UnitTarget;
  hostname: string;
  updatesDir: string;
  kexec: boolean;
  healthTimeoutMs: number;
  before: HealthReport;
  run: UpdateRun;
  /** The trial's commit deadline. */
  deadlineMs: number;
  timings: WaitTimings;
  clock: Clock;
  recover: Recover;
  log: Logger;
}

const describe = (seen: HealthReport): string => `${seen.version} (slot ${seen.slot})`;

export async function rollBack(context: RollbackContext): Promise<string> {
  const { unit, before, run, timings, clock, log, hostname } = context;
  const now = await unit.health({ timeoutMs: timings.probeTimeoutMs });
  if (isBack(before, now)) {
    run.event({ event: "rollback", how: "already back", version: now.version });
    return describe(now);
  }
  if (now) {
    log.info(`${hostname} answers on ${describe(now)}: rebooting it into its committed slot.`);
    if (!context.kexec) await unit.switch().catch(() => undefined);
    await unit
      .reboot({ kexec: context.kexec })
      .catch((error: unknown) =>
        log.warn({ err: error }, `The reboot request failed: ${describeError(error)}`),
      );
    const back = await waitBack(
      unit,
      before,
      context.healthTimeoutMs + timings.downTimeoutMs,
      timings,
      clock,
    );
    if (back) {
      run.event({ event: "rollback", how: "reboot", version: back.version });
      return describe(back);
    }
  } else if (context.kexec) {
    log.info(`${hostname} does not answer: waiting for its trial to fall back by itself.`);
    const back = await waitBack(unit, before, context.deadlineMs + timings.downTimeoutMs, timings, clock);
    if (back) {
      run.event({ event: "rollback", how: "fallback", version: back.version });
      return describe(back);
    }
  }
  return recoverUnit(context);
}

/** Still nothing: recover it with the last known-good images and this run's backup. */
async function recoverUnit(context: RollbackContext): Promise<string> {
  const { unit, before, run, timings, clock, log, hostname } = context;
  const good = await lastKnownGood(context.updatesDir, hostname);
  if (!good) {
    run.event({ event: "rollback", how: "none", message: "no known-good images to recover with" });
    return `nothing that answers; no earlier run of rtr7 safe-update holds known-good images to recover it with (run rtr7 recover by hand)`;
  }
  const backup = path.join(run.dir, "backup.tar.gz");
  const haveBackup = await access(backup).then(
    () => true,
    () => false,
  );
  log.warn({ images: good.dir }, `${hostname} is unreachable: recovering it with the images of ${good.dir}.`);
  run.event({ event: "rollback", how: "recover", images: good.dir });
  const images = {
    mbr: path.join(good.dir, imageFiles.mbr),
    boot: path.join(good.dir, imageFiles.boot),
    root: path.join(good.dir, imageFiles.root),
    ...(haveBackup ? { backup } : {}),
  };
  const failed = await context.recover({ hostname, images, imageDir: good.dir, log }).then(
    () => undefined,
    (error: unknown) => describeError(error),
  );
  const recovered =
    failed === undefined ? await waitBack(unit, before, context.healthTimeoutMs, timings, clock) : undefined;
  if (recovered) return `${describe(recovered)}, recovered from ${good.dir}`;
  return `nothing that answers (the recovery ${failed === undefined ? "ended, but the unit did not answer" : `failed: ${failed}`}); run ${path.join(good.dir, "recover.bash")} by hand`;
}
