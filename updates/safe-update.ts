// rtr7 safe-update: one health-gated update of a unit, which must never
// leave the unit unreachable, as a list of named steps over a unit target
// and an injected clock:
//   health → backup → build → push → testboot → down → healthy → soak → commit → finish
// health checks the unit is healthy and committed and makes the run
// directory; backup saves /perm; build makes the images (or links a release
// built once for a fleet); push streams root,
// boot and mbr (each hash-verified); testboot makes the next boot try the
// new slot once and reboots into it (kexec); down and healthy wait for the
// new version to answer healthy; soak watches it stay healthy, still on
// trial, for as long as asked (a fleet's --soak); commit keeps it; finish records the run and
// keeps the last N. The new slot only ever runs on trial, reached by kexec
// while the boot loader still names the committed slot, with a commit
// deadline: whatever happens to this process (an error, Ctrl-C, SIGKILL),
// the unit ends on a committed slot. A failure before testboot switches
// nothing; one from testboot to commit rolls back (updates/safe-update/
// rollback.ts), ending, if the unit stays silent, in recover() with the last
// known-good images and this run's backup. The result (or the error) times
// every step that ran.
import path from "node:path";
import { readFile } from "node:fs/promises";
import { Rtr7Error, describeError, isRtr7Error, type ErrorCode } from "../lib/errors.js";
import { formatBytes, type Logger } from "../lib/log.js";
import type { HealthReport } from "../lib/wire/health.js";
import type { UnitTarget } from "./client/index.js";
import { writeRecoverScript } from "./recover-script.js";
import { pruneRuns, UpdateRun } from "./runs.js";
import { buildImages, useRelease } from "./safe-update/build.js";
import type { Release } from "./release.js";
import { signRunManifest, type RunSigning } from "./release-signing.js";
import type { RotationStatement } from "../lib/trust/release-signature.js";
import { inProcessRecover, type Recover, type RecoverSettings } from "./safe-update/recover.js";
import { checkHealthy, openTarget } from "./safe-update/health.js";
import { rollBack } from "./safe-update/rollback.js";
import { markRecoverScriptFailed, pushImages } from "./safe-update/run-files.js";
import { realClock, StepRunner, type SafeUpdateStep, type StepTiming } from "./safe-update/steps.js";
import { soakHealthy, waitForDown, waitForNewVersion, type WaitTimings } from "./safe-update/waits.js";

export { safeUpdateSteps, type SafeUpdateStep, type StepTiming } from "./safe-update/steps.js";
export { rootImageVersion } from "./safe-update/build.js";
export type { Recover, RecoveryRequest, RecoverSettings } from "./safe-update/recover.js";

export type SafeUpdateTimings = WaitTimings;

export const defaultTimings: SafeUpdateTimings = { probeTimeoutMs: 2000, downTimeoutMs: 30_000, pollMs: 500 };

export interface SafeUpdateOptions {
  hostname: string;
  /** The unit: a target, or how to open one (called once, in the health step). */
  unit: UnitTarget | (() => Promise<UnitTarget>);
  updatesDir: string;
  /** Run through /bin/sh -c with RTR7_OUT_DIR (and GOKR_DIR) set; default `rtr7 image build`. */
  buildCommand?: string;
  /** A release built (and checked) once, linked into the run instead of a build. */
  release?: Release;
  /** The fleet's current key (and its retired ones): the run's manifest.json goes out signed by it. */
  signing?: RunSigning;
  /** Rotation statements, oldest first, for a unit that trusts an older key (updates/keys.ts rotationStatements). */
  rotations?: RotationStatement[];
  /** Let a unit that trusts a key take a release signed before the one it runs (--allow-downgrade). */
  allowDowngrade?: boolean;
  /** How long the new version must stay healthy, on trial, before the commit; default 0. */
  soakMs?: number;
  keepOnly: number;
  /** How long the new version may take to report healthy (router7: 2 min). */
  healthTimeoutMs: number;
  kexec: boolean;
  /**
   * How long the unit keeps the new slot on trial without a commit before it
   * falls back by itself; default the health timeout + the down timeout +
   * the soak + 15 s.
   */
  trialDeadlineMs?: number;
  /** How each run's recover.bash starts rtr7: the node binary and the CLI's entry script. */
  recoverScript: { node: string; entry: string };
  /** The last-resort recovery; default server/recover.ts's recover() in this process. */
  recover?: Recover;
  /** For the default recovery: rtr7 recover's settings (e.g. the interface facing the unit). */
  recoverSettings?: RecoverSettings;
  log: Logger;
  /** Byte progress of the backup download and the pushes. */
  onProgress?: (progress: { image: string; bytesDone: number; bytesTotal: number }) => void;
  /** Called once the run directory exists (the CLI copies its log lines into stdout.log). */
  onRun?: (run: UpdateRun) => void;
  /** Called as each step starts (tests kill the CLI at a chosen step). */
  onStep?: (step: SafeUpdateStep) => void;
  timings?: Partial<SafeUpdateTimings>;
  /** The clock the waits and timings run on; default the real one. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface SafeUpdateResult {
  runDir: string;
  previousVersion: string;
  version: string;
  /** Seconds between the last healthy answer before the reboot and the first after. */
  gapSeconds: number;
  /** Every step that ran, in order, with its start, duration and outcome. */
  steps: StepTiming[];
}

/** A failed safe-update: the code of what failed, and the steps that ran. */
export class SafeUpdateError extends Rtr7Error {
  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; hint?: string },
    readonly steps: StepTiming[],
    readonly runDir: string | undefined,
  ) {
    super(code, message, options);
  }
}

export async function safeUpdate(options: SafeUpdateOptions): Promise<SafeUpdateResult> {
  const clock = { now: options.now ?? realClock.now, sleep: options.sleep ?? realClock.sleep };
  const timings = { ...defaultTimings, ...options.timings };
  const log = options.log.child({ subsystem: "update" });
  const steps = new StepRunner(clock, options.onStep);
  const { hostname } = options;
  const iso = () => new Date(clock.now()).toISOString();
  const fail = (error: unknown, message: string, code: ErrorCode, runDir: string | undefined) =>
    new SafeUpdateError(
      code,
      message,
      { cause: error, hint: isRtr7Error(error) && error.code === code ? error.hint : undefined },
      steps.timings,
      runDir,
    );

  // health: the unit must be healthy and committed before anything is touched.
  let unit: UnitTarget;
  let before: HealthReport;
  let run: UpdateRun;
  try {
    ({ unit, before, run } = await steps.run("health", async () => {
      const target = await openTarget(options);
      const report = await checkHealthy(target, hostname, timings);
      log.info(
        { version: report.version, slot: report.slot },
        `${hostname} is healthy on ${report.version} (slot ${report.slot}).`,
      );
      const created = await UpdateRun.create(
        options.updatesDir,
        hostname,
        new Date(clock.now()),
        () => new Date(clock.now()),
      );
      return { unit: target, before: report, run: created };
    }));
  } catch (error) {
    throw fail(
      error,
      describeError(error),
      isRtr7Error(error) ? error.code : "RTR7_ERR_UPDATE_FAILED",
      undefined,
    );
  }
  options.onRun?.(run);
  const record = (patch: Parameters<UpdateRun["setRecord"]>[0]) => run.setRecord(patch);
  await record({ hostname, status: "running", previousVersion: before.version, startedAt: iso() });
  run.event({ event: "start", hostname, version: before.version, slot: before.slot });
  log.info({ runDir: run.dir }, `Run directory: ${run.dir}`);

  let newVersion: string | undefined;
  const prepare: [SafeUpdateStep, () => Promise<void>][] = [
    [
      "backup",
      async () => {
        const backup = await unit.backup(path.join(run.dir, "backup.tar.gz"), {
          onProgress: (bytes) =>
            options.onProgress?.({
              image: "backup.tar.gz",
              bytesDone: bytes,
              bytesTotal: Math.max(bytes, 1),
            }),
        });
        run.event({ event: "backup", bytes: backup.bytes });
        log.info({ bytes: backup.bytes }, `Backed up /perm: ${formatBytes(backup.bytes)} in backup.tar.gz.`);
      },
    ],
    [
      "build",
      async () => {
        newVersion = options.release
          ? await useRelease(options.release, run, hostname, log)
          : await buildImages({
              run,
              hostname,
              buildCommand: options.buildCommand,
              log,
              builderLog: options.log,
            });
        await record({ version: newVersion });
        const signed = await signRunManifest(run.dir, options.signing, log);
        run.event({ event: "signature", outcome: signed });
        // Every run with images gets its recover.bash before the unit is touched.
        await writeRecoverScript(run.dir, { hostname, cli: options.recoverScript });
        run.event({ event: "built", version: newVersion });
        if (newVersion === before.version)
          log.warn(
            { version: newVersion },
            `The new build reports the same version as the unit (${newVersion}); the update cannot tell them apart.`,
          );
      },
    ],
    ["push", () => pushImages(unit, run, log, options)],
  ];
  try {
    for (const [name, work] of prepare) await steps.run(name, work);
  } catch (error) {
    // Nothing was switched: the unit still runs its committed slot.
    const now = await unit.health({ timeoutMs: timings.probeTimeoutMs });
    const message = `${describeError(error)}; nothing was switched: ${hostname} ${now ? `runs ${now.version} (slot ${now.slot})` : "did not answer afterwards"}`;
    run.event({ event: "failed", step: "before-switch", message });
    run.stderr.write(`rtr7 safe-update: ${message}\n`);
    if (newVersion !== undefined) await markRecoverScriptFailed(run, options, newVersion, message);
    await record({ status: "failed", finishedAt: iso(), message, unitVersionAfter: now?.version });
    await run.close();
    throw fail(error, message, isRtr7Error(error) ? error.code : "RTR7_ERR_UPDATE_FAILED", run.dir);
  }

  // testboot to commit: any failure from here on rolls back.
  const version = newVersion ?? "";
  const soakMs = options.soakMs ?? 0;
  const deadlineMs =
    options.trialDeadlineMs ?? options.healthTimeoutMs + timings.downTimeoutMs + soakMs + 15_000;
  let lastHealthyBefore = clock.now();
  let after: { report: HealthReport; at: number } | undefined;
  const trial: [SafeUpdateStep, () => Promise<void>][] = [
    [
      "testboot",
      async () => {
        if (options.kexec) {
          await unit.testboot({ deadlineMs });
        } else {
          // The boot loader cannot boot a slot once: without kexec the switch is
          // permanent, and a rollback switches back.
          log.warn(
            "--no-kexec: the new slot becomes the default before it is proven; a rollback switches back.",
          );
          await unit.switch();
        }
        if (await unit.health({ timeoutMs: timings.probeTimeoutMs })) lastHealthyBefore = clock.now();
        await unit.reboot({ kexec: options.kexec });
        run.event({ event: "rebooting", kexec: options.kexec, deadlineMs });
        log.info(`Rebooting ${hostname} into the new slot${options.kexec ? " with kexec" : ""}.`);
      },
    ],
    ["down", () => waitForDown(unit, before, timings, clock)],
    [
      "healthy",
      async () => {
        after = await waitForNewVersion(unit, before, version, options.healthTimeoutMs, timings, clock);
        const gapSeconds = (after.at - lastHealthyBefore) / 1000;
        run.event({ event: "healthy", version: after.report.version, slot: after.report.slot, gapSeconds });
        log.info(
          { gapSeconds },
          `${hostname} is healthy on ${after.report.version} (slot ${after.report.slot}); no answer for ${gapSeconds.toFixed(1)} s.`,
        );
      },
    ],
    [
      "soak",
      async () => {
        if (soakMs <= 0) return;
        log.info(`Soaking: ${hostname} must stay healthy on ${version} for ${Math.round(soakMs / 1000)} s.`);
        await soakHealthy(unit, version, after?.report.slot ?? before.slot, soakMs, timings, clock);
        run.event({ event: "soaked", version, ms: soakMs });
      },
    ],
    [
      "commit",
      async () => {
        await unit.commit();
        run.event({ event: "committed", version: after?.report.version, slot: after?.report.slot });
      },
    ],
  ];
  try {
    for (const [name, work] of trial) await steps.run(name, work);
  } catch (error) {
    const reason = describeError(error);
    log.error({ err: error }, `The update failed: ${reason}. Rolling back.`);
    run.event({ event: "failed", step: steps.current, message: reason });
    const now = await rollBack({
      unit,
      hostname,
      updatesDir: options.updatesDir,
      kexec: options.kexec,
      healthTimeoutMs: options.healthTimeoutMs,
      before,
      run,
      deadlineMs,
      timings,
      clock,
      recover: options.recover ?? inProcessRecover(options.recoverSettings),
      log,
    }).catch((rollbackError: unknown) => {
      run.event({ event: "rollback-failed", message: describeError(rollbackError) });
      return `unknown (${describeError(rollbackError)})`;
    });
    const message = `${reason}; rolled back: ${hostname} now runs ${now}`;
    run.stderr.write(`rtr7 safe-update: ${message}\n`);
    await markRecoverScriptFailed(run, options, version || "?", message);
    await record({ status: "failed", finishedAt: iso(), message, unitVersionAfter: now });
    await run.close();
    throw fail(error, message, "RTR7_ERR_UPDATE_FAILED", run.dir);
  }

  // finish: the unit runs the new version, committed; what fails now is only bookkeeping.
  const committed = after as { report: HealthReport; at: number };
  const gapSeconds = (committed.at - lastHealthyBefore) / 1000;
  try {
    await steps.run("finish", async () => {
      await record({ status: "committed", finishedAt: iso(), unitVersionAfter: committed.report.version });
      const deleted = await pruneRuns(options.updatesDir, hostname, options.keepOnly, [run.dir]);
      if (deleted.length > 0) run.event({ event: "pruned", dirs: deleted });
      log.info(`Updated ${hostname} from ${before.version} to ${committed.report.version}; committed.`);
      await run.close();
    });
  } catch (error) {
    throw fail(
      error,
      `${hostname} runs ${committed.report.version}, committed, but finishing the run failed: ${describeError(error)}`,
      isRtr7Error(error) ? error.code : "RTR7_ERR_FILE_MISSING",
      run.dir,
    );
  }
  return {
    runDir: run.dir,
    previousVersion: before.version,
    version: committed.report.version,
    gapSeconds,
    steps: steps.timings,
  };
}

/** For messages and tests: reads run.json. */
export async function readRunRecord(runDir: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path.join(runDir, "run.json"), "utf8")) as Record<string, unknown>;
}
