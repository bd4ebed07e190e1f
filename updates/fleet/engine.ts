// The rollout engine: one release across many units, in stages, never
// taking the whole fleet down. A rollout's units are put in order once
// (sorted by hostname, so a run is predictable and a resume sees the same
// plan) and cut into waves: the canary wave first (--canary units), then
// waves of at most --parallel units that run at once. A wave starts only
// when every unit of the one before has finished, soak included. Once the
// failures pass the threshold (--max-failures, or --max-failure-rate of the
// rollout's units) no further unit starts: those already running finish or
// roll back, and the rollout ends halted. A unit that is unreachable or
// unhealthy before its turn is skipped, not failed.
//
// The engine does not know how a unit is reached: a UnitDriver updates one
// unit and says how it ended (push: safe-update over the LAN, updates/fleet/
// push-driver.ts; the remote fleet adds MQTT jobs). Every change of state is
// written to the store (updates/fleet/store.ts) before the engine goes on,
// so a SIGKILL at any moment loses nothing: `resume` first brings each unit
// that was in the middle of its update to a committed slot (the driver's
// settle), counts it done if it already runs the release, and carries on
// with the units still queued. A finished unit (succeeded, failed or
// skipped) is never updated twice by the same rollout.
import { describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import type { FleetStore, RolloutRecord, RolloutSettings, RolloutUnit, UnitState } from "./store.js";

export interface UnitOutcome {
  result: "succeeded" | "failed" | "skipped";
  fromVersion?: string;
  toVersion?: string;
  runDir?: string;
  /** Why it failed or was skipped. */
  reason?: string;
  /** The step it ended in. */
  step?: string;
}

export interface UnitProgress {
  image: string;
  bytesDone: number;
  bytesTotal: number;
}

export interface UnitDriver {
  /** Updates one unit to the release; a thrown error counts as a failure. */
  update(
    unit: RolloutUnit,
    hooks: { onStep: (step: string) => void; onProgress: (progress: UnitProgress) => void },
  ): Promise<UnitOutcome>;
  /**
   * After an interruption: brings a unit that was in the middle of its
   * update to a committed slot, and says which version it runs committed
   * (undefined with a reason when it does not answer).
   */
  settle(unit: RolloutUnit): Promise<{ committedVersion?: string; reason?: string }>;
}

export interface RolloutObserver {
  onWave?(wave: number, units: RolloutUnit[]): void;
  onUnitStart?(unit: RolloutUnit): void;
  onUnitStep?(unit: RolloutUnit, step: string): void;
  onUnitProgress?(unit: RolloutUnit, progress: UnitProgress): void;
  onUnitEnd?(unit: RolloutUnit): void;
  onHalt?(reason: string): void;
}

export interface PlannedUnit {
  hostname: string;
  address: string;
  port: number;
  position: number;
  wave: number;
}

/** Orders the units by hostname and cuts them into the canary wave and waves of `parallel`. */
export function planWaves(
  units: { hostname: string; address: string; port: number }[],
  settings: Pick<RolloutSettings, "canary" | "parallel">,
): PlannedUnit[] {
  const sorted = [...units].sort((x, y) => x.hostname.localeCompare(y.hostname));
  const canary = Math.min(Math.max(0, settings.canary), sorted.length);
  const parallel = Math.max(1, settings.parallel);
  return sorted.map((unit, position) => ({
    hostname: unit.hostname,
    address: unit.address,
    port: unit.port,
    position,
    wave: position < canary ? 0 : (canary > 0 ? 1 : 0) + Math.floor((position - canary) / parallel),
  }));
}

/** How many failures the rollout tolerates; one more halts it. */
export function allowedFailures(settings: RolloutSettings, units: number): number {
  if (settings.maxFailureRate !== undefined) return Math.floor(settings.maxFailureRate * units);
  return settings.maxFailures;
}

export interface RunRolloutOptions {
  store: FleetStore;
  rolloutId: string;
  driver: UnitDriver;
  observer?: RolloutObserver;
  log: Logger;
  now?: () => Date;
}

const finishedStates: UnitState[] = ["succeeded", "failed", "skipped"];

/** Runs (or resumes) a rollout to its end: finished, or halted by its failures. */
export async function runRollout(options: RunRolloutOptions): Promise<RolloutRecord> {
  const { store, rolloutId: id, driver, log } = options;
  const observer = options.observer ?? {};
  const now = (): string => (options.now ?? (() => new Date()))().toISOString();
  const rollout = store.requireRollout(id);
  store.updateRollout(id, { status: "running", pid: process.pid, reason: undefined });

  // Units in the middle of their update when the last run died: committed slot first.
  const interrupted = store.units(id).filter((unit) => unit.state === "running");
  await Promise.all(
    interrupted.map(async (unit) => {
      log.info(
        { unit: unit.hostname, step: unit.step },
        `${unit.hostname} was in step ${unit.step ?? "?"} when the rollout stopped: bringing it to a committed slot.`,
      );
      const settled = await driver
        .settle(unit)
        .catch((error: unknown) => ({ committedVersion: undefined, reason: describeError(error) }));
      if (settled.committedVersion === rollout.version) {
        store.updateUnit(id, unit.hostname, {
          state: "succeeded",
          toVersion: rollout.version,
          finishedAt: now(),
          reason: "committed before the rollout was interrupted",
        });
      } else if (settled.committedVersion !== undefined) {
        store.updateUnit(id, unit.hostname, { state: "queued", step: undefined, reason: undefined });
      } else {
        store.updateUnit(id, unit.hostname, {
          state: "failed",
          finishedAt: now(),
          reason: `interrupted in step ${unit.step ?? "?"}, and then ${settled.reason ?? "did not answer"}`,
        });
      }
    }),
  );

  const all = store.units(id);
  const allowed = allowedFailures(rollout.settings, all.length);
  // Failures from before a resume were seen by whoever resumed: only new ones count.
  const failedBefore = all.filter((unit) => unit.state === "failed").length;
  let failures = 0;
  let halt: string | undefined;
  const waves = [...new Set(all.map((unit) => unit.wave))].sort((x, y) => x - y);
  for (const wave of waves) {
    if (halt) break;
    const queued = store.units(id).filter((unit) => unit.wave === wave && unit.state === "queued");
    if (queued.length === 0) continue;
    observer.onWave?.(wave, queued);
    log.debug({ wave, units: queued.map((unit) => unit.hostname) }, `wave ${wave}`);
    await Promise.all(
      queued.map(async (planned) => {
        const started: RolloutUnit = {
          ...planned,
          state: "running",
          startedAt: now(),
          attempts: planned.attempts + 1,
          step: undefined,
          reason: undefined,
        };
        store.updateUnit(id, planned.hostname, {
          state: "running",
          startedAt: started.startedAt,
          attempts: started.attempts,
          step: undefined,
          reason: undefined,
        });
        observer.onUnitStart?.(started);
        const outcome = await driver
          .update(started, {
            onStep: (step) => {
              started.step = step;
              store.updateUnit(id, planned.hostname, { step });
              observer.onUnitStep?.(started, step);
            },
            onProgress: (progress) => observer.onUnitProgress?.(started, progress),
          })
          .catch((error: unknown): UnitOutcome => ({
            result: "failed",
            reason: describeError(error),
            step: started.step,
          }));
        const ended: RolloutUnit = {
          ...started,
          state: outcome.result,
          step: outcome.step ?? started.step,
          fromVersion: outcome.fromVersion,
          toVersion: outcome.toVersion,
          runDir: outcome.runDir,
          reason: outcome.reason,
          finishedAt: now(),
        };
        store.updateUnit(id, planned.hostname, {
          state: ended.state,
          step: ended.step,
          fromVersion: ended.fromVersion,
          toVersion: ended.toVersion,
          runDir: ended.runDir,
          reason: ended.reason,
          finishedAt: ended.finishedAt,
        });
        if (outcome.result === "failed") {
          failures += 1;
          if (failures > allowed && !halt) {
            halt = `${failures} unit${failures === 1 ? "" : "s"} failed (allowed: ${allowed}); no further unit starts`;
            observer.onHalt?.(halt);
          }
        }
        observer.onUnitEnd?.(ended);
      }),
    );
  }
  const remaining = store.units(id).filter((unit) => !finishedStates.includes(unit.state));
  if (halt) {
    store.updateRollout(id, { status: "halted", reason: halt, pid: undefined });
    log.warn(
      { failed: failures, failedBefore, notStarted: remaining.length },
      `The rollout halted: ${halt}; ${remaining.length} unit${remaining.length === 1 ? "" : "s"} not started.`,
    );
  } else {
    store.updateRollout(id, { status: "finished", finishedAt: now(), pid: undefined });
  }
  return store.requireRollout(id);
}
