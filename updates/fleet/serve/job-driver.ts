// The job driver: how a rollout (updates/fleet/engine.ts) reaches a unit
// behind NAT. A unit's update is one MQTT job (docs/jobs.md): the driver
// records it QUEUED in the job store, publishes its document retained on
// the unit's jobs/next (QoS 1, so a unit that connects later still finds
// it), then follows the unit's job updates: each IN_PROGRESS step and
// download progress goes to the engine's hooks, SUCCEEDED ends it
// succeeded, FAILED and REJECTED failed with the unit's reason. A unit that
// says nothing for the job's timeoutMs (no update, no state naming the job)
// ends TIMED_OUT and counts as failed: a bricked unit never leaves a rollout
// "in progress" (hawkBit#693). Whatever the end, the retained document is
// cleared, so the unit never starts a job the server has closed. The
// unit's retained state saying it runs the release committed (not on
// trial, healthy) ends the job SUCCEEDED as well: with the embedded broker,
// a kill of the server takes the broker and its queued messages with it,
// and the unit's SUCCEEDED may never arrive, but its state is published
// again when it reconnects.
//
// A unit that is offline, on trial or unhealthy by its last retained state
// is skipped, not failed, as the push driver skips one that does not answer.
// After a restart of the server (`settle`), the job store decides, never a
// new job: a job that ended stays ended (SUCCEEDED: the unit runs the
// release; anything else: failed, not sent again), and one still running is
// followed to its end, its timeout counted from the last time the unit was
// heard, its document published again only if the broker never took it.
import { describeError } from "../../../lib/errors.js";
import type { Logger } from "../../../lib/log.js";
import { checkedJobId, isFinalJobState, type JobDocument, type JobRelease } from "../../../lib/wire/jobs.js";
import type { UnitDriver, UnitOutcome, UnitProgress } from "../engine.js";
import type { RolloutUnit } from "../store.js";
import type { JobChannel } from "./job-channel.js";
import type { JobRecord, JobStore } from "./job-store.js";

export interface JobDriverOptions {
  channel: JobChannel;
  store: JobStore;
  rolloutId: string;
  release: JobRelease;
  soakMs: number;
  healthTimeoutMs: number;
  /** Nothing heard from the unit for this long ends the job TIMED_OUT. */
  timeoutMs: number;
  allowDowngrade: boolean;
  /** Where the unit uploads its backup before updating. */
  backupUrl?: (hostname: string) => string;
  log: Logger;
  now?: () => Date;
}

export interface JobDriver extends UnitDriver {
  /** Stops following every job without ending any (a server going down); nothing more is written. */
  stop(): void;
}

type Hooks = { onStep: (step: string) => void; onProgress: (progress: UnitProgress) => void };

const noHooks: Hooks = { onStep: () => undefined, onProgress: () => undefined };

/** rollout id, hostname and attempt: unique, and the same after a restart. */
export function jobIdFor(rolloutId: string, hostname: string, attempt: number): string {
  return checkedJobId(`${rolloutId}-${hostname}-${attempt}`);
}

export function jobDriver(options: JobDriverOptions): JobDriver {
  const { channel, store, log } = options;
  const now = (): Date => (options.now ?? (() => new Date()))();
  const stops = new Set<() => void>();
  let stopped = false;

  const logFields = (hostname: string, jobId: string) => ({
    subsystem: "fleet-serve",
    peer: hostname,
    job: jobId,
  });

  /** Resolves with the job's final record; never resolves once the driver is stopped. */
  function follow(job: JobRecord, hooks: Hooks): Promise<JobRecord> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let lastStep = job.step;
      const finish = (): void => {
        clearTimeout(timer);
        unfollow();
        unfollowUnit();
        stops.delete(halt);
        resolve(store.job(job.jobId) ?? job);
      };
      const halt = (): void => {
        clearTimeout(timer);
        unfollow();
        unfollowUnit();
      };
      // The unit's own state saying it runs the release committed ends the job
      // too: its SUCCEEDED may have been lost with a broker that restarted.
      const committed = (state: { version?: string; trial?: boolean; health?: string }): boolean => {
        if (state.version !== options.release.version || state.trial !== false || state.health !== "")
          return false;
        const current = store.job(job.jobId);
        if (current && !isFinalJobState(current.state)) {
          const at = now().toISOString();
          store.updateJob(job.jobId, {
            state: "SUCCEEDED",
            unitVersion: state.version,
            reason: `its state says it runs ${state.version} committed (its SUCCEEDED was not heard)`,
            lastHeardAt: at,
            endedAt: at,
          });
        }
        finish();
        return true;
      };
      const timedOut = (): void => {
        const current = store.job(job.jobId);
        if (current && !isFinalJobState(current.state)) {
          const reason = `nothing heard from ${job.hostname} for ${Math.round(options.timeoutMs / 1000)} s (last step: ${current.step ?? "none"})`;
          store.updateJob(job.jobId, { state: "TIMED_OUT", reason, endedAt: now().toISOString() });
          log.warn(
            { ...logFields(job.hostname, job.jobId), state: "TIMED_OUT" },
            `job ${job.jobId}: ${reason}`,
          );
        }
        finish();
      };
      const arm = (ms: number): void => {
        clearTimeout(timer);
        timer = setTimeout(timedOut, Math.max(0, ms));
      };
      const unfollow = channel.follow(job.jobId, (event) => {
        if (event.kind === "update") {
          const { update } = event;
          if (update.step !== undefined && update.step !== lastStep) {
            lastStep = update.step;
            hooks.onStep(update.step);
          }
          if (update.progress) hooks.onProgress(update.progress);
          if (isFinalJobState(update.state)) return finish();
        }
        arm(options.timeoutMs);
      });
      const unfollowUnit = channel.followUnit(job.hostname, (state) => void committed(state));
      stops.add(halt);
      const current = store.job(job.jobId);
      if (current && isFinalJobState(current.state)) return finish();
      const known = store.unit(job.hostname);
      if (job.publishedAt !== undefined && known && committed(known)) return;
      const heardAgo = now().getTime() - Date.parse(current?.lastHeardAt ?? job.lastHeardAt);
      arm(options.timeoutMs - (Number.isFinite(heardAgo) ? heardAgo : 0));
    });
  }

  async function publish(job: JobRecord): Promise<void> {
    await channel.publishJob(job.hostname, job.document);
    const at = now().toISOString();
    store.updateJob(job.jobId, { publishedAt: at, lastHeardAt: at });
  }

  /** Clears the retained document; a broker that does not answer only costs a warning. */
  async function clear(job: JobRecord): Promise<void> {
    await channel
      .clearJob(job.hostname)
      .catch((error: unknown) =>
        log.warn(
          { ...logFields(job.hostname, job.jobId), err: describeError(error) },
          `could not clear ${job.hostname}'s retained job: ${describeError(error)}`,
        ),
      );
  }

  async function runToEnd(job: JobRecord, hooks: Hooks): Promise<JobRecord> {
    if (job.publishedAt === undefined) await publish(job);
    const ended = await follow(store.job(job.jobId) ?? job, hooks);
    await clear(ended);
    log.info(
      { ...logFields(ended.hostname, ended.jobId), state: ended.state, reason: ended.reason },
      `job ${ended.jobId}: ${ended.state}${ended.reason ? ` (${ended.reason})` : ""}`,
    );
    return ended;
  }

  function skipReason(hostname: string): string | undefined {
    const unit = store.unit(hostname);
    if (!unit) return `${hostname} has never connected to the broker`;
    if (!unit.online) return `${hostname} is offline (last seen ${unit.lastSeen})`;
    if (unit.trial === true) return `${hostname} is on trial (slot ${unit.slot ?? "?"})`;
    if (unit.health !== undefined && unit.health !== "") return `${hostname} is unhealthy: ${unit.health}`;
    return undefined;
  }

  function outcomeOf(job: JobRecord, fromVersion: string | undefined): UnitOutcome {
    const base = {
      ...(fromVersion !== undefined ? { fromVersion } : {}),
      ...(job.step ? { step: job.step } : {}),
    };
    if (job.state === "SUCCEEDED")
      return { ...base, result: "succeeded", toVersion: job.unitVersion ?? options.release.version };
    return {
      ...base,
      result: "failed",
      reason: `${job.state}${job.reason ? `: ${job.reason}` : ""}`,
      ...(job.unitVersion !== undefined ? { toVersion: job.unitVersion } : {}),
    };
  }

  return {
    async update(unit: RolloutUnit, hooks: Hooks): Promise<UnitOutcome> {
      if (stopped) throw new Error("the job driver is stopped");
      const jobId = jobIdFor(options.rolloutId, unit.hostname, Math.max(1, unit.attempts));
      const fromVersion = store.unit(unit.hostname)?.version;
      let job = store.job(jobId);
      if (job && isFinalJobState(job.state)) return outcomeOf(job, fromVersion);
      if (!job) {
        const skipped = skipReason(unit.hostname);
        if (skipped !== undefined) return { result: "skipped", reason: skipped, step: "health" };
        const document: JobDocument = {
          jobId,
          operation: "update",
          rolloutId: options.rolloutId,
          release: options.release,
          soakMs: options.soakMs,
          healthTimeoutMs: options.healthTimeoutMs,
          timeoutMs: options.timeoutMs,
          allowDowngrade: options.allowDowngrade,
          ...(options.backupUrl ? { backupUrl: options.backupUrl(unit.hostname) } : {}),
          createdAt: now().toISOString(),
        };
        store.createJob(unit.hostname, document);
        const created = store.job(jobId);
        if (!created) throw new Error(`job ${jobId} was not recorded in ${store.file}`);
        job = created;
        log.info(
          logFields(unit.hostname, jobId),
          `job ${jobId}: ${options.release.version} to ${unit.hostname}`,
        );
      }
      hooks.onStep("queued");
      return outcomeOf(await runToEnd(job, hooks), fromVersion);
    },

    async settle(unit: RolloutUnit): Promise<{ committedVersion?: string; reason?: string }> {
      const job = store.latestJob(options.rolloutId, unit.hostname);
      const known = store.unit(unit.hostname);
      if (!job)
        return known?.version !== undefined
          ? { committedVersion: known.version }
          : { reason: `${unit.hostname} has never reported its state` };
      const ended = isFinalJobState(job.state) ? job : await runToEnd(job, noHooks);
      if (ended === job) await clear(job);
      if (ended.state === "SUCCEEDED")
        return { committedVersion: ended.unitVersion ?? options.release.version };
      return {
        reason: `its job ${ended.jobId} ended ${ended.state}${ended.reason ? `: ${ended.reason}` : ""}`,
      };
    },

    stop(): void {
      stopped = true;
      for (const halt of stops) halt();
      stops.clear();
    },
  };
}
