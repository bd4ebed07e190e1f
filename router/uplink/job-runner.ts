// The uplink's update job, as a state machine over an injected Installer
// (installer.ts), reported through `report` and recorded on /perm
// (job-record.ts) before each report:
//   health → backup → manifest → download → testboot → reboot, then, in the
//   next boot, healthy → soak → commit → SUCCEEDED.
// The broker is not trusted to choose what the unit installs: a release is
// taken only when its manifest is signed by a key in /perm/rtr7/trusted-keys
// and fits the unit (release-check.ts), else REJECTED before the installer
// is asked anything.
// A unit that trusts no key takes unsigned updates over its LAN API (as
// gokrazy's do), but rejects every remote job: otherwise whoever holds the
// broker could make it install anything.
//
// After a boot (or a restart of the uplink), a record still IN_PROGRESS is
// ended from it and the boot state, never left in progress:
//   - running the job's version on trial: the trial is up; go on with
//     healthy, soak and commit (a power cut during the soak lands here only
//     if the trial survived, which a firmware boot never does);
//   - running the job's version committed: the commit went through before
//     the cut, so SUCCEEDED;
//   - running another version, the record at reboot or later: the trial
//     fell back (unhealthy, power cut, crash, deadline): FAILED "fell back
//     to VERSION: why";
//   - running another version, the record before reboot (health, backup,
//     manifest, download, testboot): nothing was switched (a testboot
//     without its kexec is undone by a firmware boot): FAILED naming the
//     step; the inactive slot is left incomplete, and the server may send
//     the job again under a new id.
import { describeError, isRtr7Error } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import { checkedJobId, parseJobDocument, type JobDocument, type JobUpdate } from "../../lib/wire/jobs.js";
import type { ManifestImage } from "../../lib/wire/manifest.js";
import { downloadImage, putStream } from "./https.js";
import { fetchVerifiedRelease, JobEnd } from "./release-check.js";
import type { BootState, Installer } from "./installer.js";
import { isFinished, readJobRecord, writeJobRecord, type JobRecord } from "./job-record.js";

export interface JobRunnerOptions {
  installer: Installer;
  perm: string;
  hostname: string;
  /** The unit's credential (uplink.json), for the backup upload. */
  credential: { username: string; password: string };
  /** Publishes a job update (QoS 1); queued while the broker is away. */
  report: (update: JobUpdate) => void;
  /** Before the reboot: lets the reports so far reach the broker (bounded). */
  beforeReboot?: () => Promise<void>;
  /** Called when the job the unit works on changes (for its UnitState). */
  onJobChange?: (jobId: string | undefined) => void;
  log: Logger;
  now?: () => Date;
  /** How long, at boot, the boot state may stay unknown before a job in flight ends FAILED (default 2 min). */
  bootStateWaitMs?: number;
  /** How often health is asked during healthy and soak, and the boot state at boot (default 5 s). */
  healthPollMs?: number;
  /** Added to healthTimeoutMs + soakMs for the trial's commit deadline (default 2 min). */
  deadlineMarginMs?: number;
  download?: { maxRetries?: number; retryDelayMs?: number; idleMs?: number };
  /** How often download progress is reported at most (default 2 s). */
  progressEveryMs?: number;
}

/** Steps after which the unit may have booted the job's version. */
const afterReboot = new Set(["reboot", "healthy", "soak", "commit", "rollback"]);

export class JobRunner {
  private running: string | undefined;
  private readonly log: Logger;
  private readonly now: () => Date;

  constructor(private readonly options: JobRunnerOptions) {
    this.log = options.log;
    this.now = options.now ?? (() => new Date());
  }

  /** The job being worked on, if any. */
  get current(): string | undefined {
    return this.running;
  }

  /** A payload of rtr7/units/HOST/jobs/next: empty (no job), malformed (REJECTED when its id is known), or a job. */
  async handleDocument(payload: Buffer): Promise<void> {
    if (payload.length === 0) return;
    let job: JobDocument;
    try {
      job = parseJobDocument(payload);
    } catch (error) {
      const jobId = readableJobId(payload);
      this.log.error(
        { code: isRtr7Error(error) ? error.code : undefined, jobId },
        `skipped a job document: ${describeError(error)}`,
      );
      if (jobId !== undefined && jobId !== this.running)
        this.report({ jobId, state: "REJECTED", reason: describeError(error) });
      return;
    }
    if (this.running !== undefined) {
      if (this.running !== job.jobId)
        this.log.warn({ jobId: job.jobId }, `job ${job.jobId} waits: job ${this.running} is running`);
      return;
    }
    const { record } = await readJobRecord(this.options.perm);
    if (record?.job.jobId === job.jobId) {
      if (isFinished(record)) {
        this.log.info({ jobId: job.jobId }, `job ${job.jobId} already ended ${record.state}; not run again`);
        this.reportRecord(record);
      }
      return;
    }
    await this.run(job);
  }

  /** At start: ends or continues a job the record says was in flight (see the header). */
  async resumeAfterBoot(): Promise<void> {
    const { record, problem } = await readJobRecord(this.options.perm);
    if (problem !== undefined) this.log.error(problem);
    if (record === undefined) return;
    if (isFinished(record)) {
      this.reportRecord(record);
      return;
    }
    this.begin(record.job.jobId);
    try {
      const boot = await this.bootStateSoon();
      const target = record.job.release.version;
      if (boot.version === target && boot.trial) {
        await this.trialGate(record, boot);
        return;
      }
      if (boot.version === target) {
        await this.finish(record, "SUCCEEDED", undefined, boot.version);
        return;
      }
      const why =
        record.step !== undefined && afterReboot.has(record.step)
          ? `fell back to ${boot.version}: ${record.trialFailure ?? `the trial of ${target} ended before its commit (power lost, a crash, or the commit deadline)`}`
          : `the uplink stopped during step ${record.step ?? "?"} (power lost or restarted); nothing was switched, the unit runs ${boot.version} committed`;
      await this.finish(record, "FAILED", why, boot.version);
    } catch (error) {
      await this.finish(record, "FAILED", describeError(error));
    } finally {
      this.begin(undefined);
    }
  }

  /**
   * The boot state, asked again while the unit's services are still coming
   * up (the update API starts after the uplink at boot): a job in flight is
   * never ended FAILED only because the API was not listening yet.
   */
  private async bootStateSoon(): Promise<BootState> {
    const until = Date.now() + (this.options.bootStateWaitMs ?? 120_000);
    for (;;) {
      try {
        return await this.options.installer.bootState();
      } catch (error) {
        if (Date.now() >= until) throw error;
        await sleep(this.options.healthPollMs ?? 5000);
      }
    }
  }

  /** diagd's first_error; a probe that fails counts as unhealthy, with why. */
  private async health(): Promise<string> {
    try {
      return await this.options.installer.health();
    } catch (error) {
      return `health unknown: ${describeError(error)}`;
    }
  }

  private begin(jobId: string | undefined): void {
    this.running = jobId;
    this.options.onJobChange?.(jobId);
  }

  private report(update: Omit<JobUpdate, "at">): void {
    this.options.report({ ...update, at: this.now().toISOString() });
  }

  private reportRecord(record: JobRecord): void {
    this.report({
      jobId: record.job.jobId,
      state: record.state === "SUCCEEDED" || record.state === "FAILED" ? record.state : "REJECTED",
      ...(record.reason === undefined ? {} : { reason: record.reason }),
    });
  }

  private async step(record: JobRecord, step: string, extra: Partial<JobRecord> = {}): Promise<void> {
    Object.assign(record, extra, { state: "IN_PROGRESS", step, updatedAt: this.now().toISOString() });
    await writeJobRecord(this.options.perm, record);
    this.log.info({ jobId: record.job.jobId, step }, `job ${record.job.jobId}: ${step}`);
    this.report({ jobId: record.job.jobId, state: "IN_PROGRESS", step });
  }

  private async finish(
    record: JobRecord,
    state: "SUCCEEDED" | "FAILED" | "REJECTED",
    reason?: string,
    version?: string,
  ): Promise<void> {
    record.state = state;
    delete record.step;
    if (reason === undefined) delete record.reason;
    else record.reason = reason;
    record.updatedAt = this.now().toISOString();
    try {
      await writeJobRecord(this.options.perm, record);
    } catch (error) {
      this.log.error({ err: error }, `cannot record the end of job ${record.job.jobId}`);
    }
    const line = `job ${record.job.jobId} ${state}${reason === undefined ? "" : `: ${reason}`}`;
    if (state === "SUCCEEDED") this.log.info({ jobId: record.job.jobId }, line);
    else this.log.error({ jobId: record.job.jobId }, line);
    this.report({
      jobId: record.job.jobId,
      state,
      ...(reason === undefined ? {} : { reason }),
      ...(version === undefined ? {} : { version }),
    });
  }

  private async run(job: JobDocument): Promise<void> {
    const { installer } = this.options;
    this.begin(job.jobId);
    let record: JobRecord | undefined;
    try {
      const boot = await installer.bootState();
      record = {
        job,
        state: "IN_PROGRESS",
        from: { version: boot.version, slot: boot.slot },
        updatedAt: this.now().toISOString(),
      };
      await this.step(record, "health");
      if (boot.trial || boot.slot !== boot.committedSlot)
        throw new JobEnd(
          "FAILED",
          `the unit runs slot ${boot.slot}${boot.trial ? " on trial" : ""} while slot ${boot.committedSlot} is committed: it takes a job only committed`,
        );
      const health = await this.health();
      if (health !== "") throw new JobEnd("FAILED", `the unit is not healthy: ${health}`);

      await this.step(record, "backup");
      if (job.backupUrl !== undefined) {
        const url = new URL(job.backupUrl);
        const pin = url.host === new URL(job.release.baseUrl).host ? job.release.tlsFingerprint : undefined;
        try {
          await putStream(url, await installer.backup(), this.options.credential, pin);
        } catch (error) {
          throw new JobEnd("FAILED", `backup: ${describeError(error)}`);
        }
      }

      await this.step(record, "manifest");
      const signed = await fetchVerifiedRelease(
        { perm: this.options.perm, hostname: this.options.hostname, log: this.log },
        job,
        boot,
      );

      await installer.acceptManifest({
        manifest: signed.manifestText,
        signature: signed.signature,
        allowDowngrade: job.allowDowngrade,
      });
      await this.step(record, "download");
      for (const image of signed.images) await this.download(job, image);

      await this.step(record, "testboot");
      await installer.testboot(job.healthTimeoutMs + job.soakMs + (this.options.deadlineMarginMs ?? 120_000));
      await this.step(record, "reboot");
      await this.options.beforeReboot?.();
      await installer.reboot();
    } catch (error) {
      const end = error instanceof JobEnd ? error : new JobEnd("FAILED", describeError(error));
      if (record) await this.finish(record, end.state, end.message);
      else this.report({ jobId: job.jobId, state: end.state, reason: end.message });
      this.begin(undefined);
    }
  }

  private async download(job: JobDocument, image: ManifestImage): Promise<void> {
    const sink = await this.options.installer.openImage(image);
    const every = this.options.progressEveryMs ?? 2000;
    let last = 0;
    const progress = (bytesDone: number): void => {
      const at = Date.now();
      if (bytesDone !== image.size && at - last < every) return;
      last = at;
      this.report({
        jobId: job.jobId,
        state: "IN_PROGRESS",
        step: "download",
        progress: { image: image.name, bytesDone, bytesTotal: image.size },
      });
    };
    progress(0);
    try {
      await downloadImage({
        url: new URL(image.name, job.release.baseUrl),
        image,
        sink,
        ...(job.release.tlsFingerprint === undefined ? {} : { fingerprint: job.release.tlsFingerprint }),
        ...this.options.download,
        onProgress: progress,
        onResume: (offset, why) =>
          this.log.warn(
            { jobId: job.jobId, image: image.name, offset },
            `${image.name}: ${why}; resuming from byte ${offset} with Range`,
          ),
      });
    } catch (error) {
      await sink.abort(describeError(error)).catch(() => undefined);
      throw error;
    }
    await sink.finish();
  }

  /** On trial with the job's version: healthy within healthTimeoutMs, then soakMs healthy, then commit. */
  private async trialGate(record: JobRecord, boot: BootState): Promise<void> {
    const { installer } = this.options;
    const job = record.job;
    const poll = this.options.healthPollMs ?? 5000;
    await this.step(record, "healthy");
    const healthyBy = Date.now() + job.healthTimeoutMs;
    let health = await this.health();
    while (health !== "" && Date.now() < healthyBy) {
      await sleep(Math.min(poll, Math.max(0, healthyBy - Date.now())));
      health = await this.health();
    }
    if (health !== "") {
      await this.rollBack(record, `not healthy within ${job.healthTimeoutMs / 1000} s: ${health}`);
      return;
    }
    await this.step(record, "soak");
    const soakUntil = Date.now() + job.soakMs;
    while (Date.now() < soakUntil) {
      await sleep(Math.min(poll, Math.max(0, soakUntil - Date.now())));
      health = await this.health();
      if (health !== "") {
        await this.rollBack(record, `unhealthy during the soak: ${health}`);
        return;
      }
    }
    await this.step(record, "commit");
    await installer.commit();
    await this.finish(record, "SUCCEEDED", undefined, boot.version);
  }

  /** Records why the trial failed, then reboots into the committed slot; the next boot reports FAILED. */
  private async rollBack(record: JobRecord, why: string): Promise<void> {
    await this.step(record, "rollback", { trialFailure: why });
    await this.options.beforeReboot?.();
    await this.options.installer.rollback();
  }
}

function readableJobId(payload: Buffer): string | undefined {
  try {
    const value = JSON.parse(payload.toString("utf8")) as { jobId?: unknown };
    return typeof value.jobId === "string" ? checkedJobId(value.jobId) : undefined;
  } catch {
    return undefined;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
