// Rollouts on `rtr7 fleet serve`: the same engine as on the LAN
// (updates/fleet/engine.ts's runRollout, with its canary, waves, failure
// threshold and soak) over the job driver, one per rollout. A rollout takes
// the published release named and the units of the inventory whose
// hostname matches the glob (and that the release fits), is recorded in
// DATA/fleet.sqlite, and runs in the background; the API answers with its
// id at once. At a start of the server, every rollout still marked running
// (the server was killed) is resumed: the engine settles its running units
// through the job store, so none is updated twice.
import { describeError, Rtr7Error } from "../../../lib/errors.js";
import type { Logger } from "../../../lib/log.js";
import { runRollout } from "../engine.js";
import { createRollout, selectUnits } from "../rollout.js";
import type { FleetStore, RolloutSettings } from "../store.js";
import { loadRelease } from "../../release.js";
import type { JobChannel } from "./job-channel.js";
import { jobDriver, type JobDriver } from "./job-driver.js";
import type { JobStore } from "./job-store.js";
import type { ReleaseStore } from "./release-store.js";

export interface ServerRolloutsOptions {
  fleet: FleetStore;
  jobs: JobStore;
  channel: JobChannel;
  releases: ReleaseStore;
  /** https://HOST:PORT the units reach the server at (known once it listens). */
  publicUrl: () => string;
  /** The server certificate's fingerprint, which units pin for the release URL. */
  tlsFingerprint: string;
  /** Nothing heard from a unit for this long ends its job TIMED_OUT. */
  jobTimeoutMs: number;
  log: Logger;
}

export interface RolloutRequest {
  version: string;
  settings: RolloutSettings;
}

export class ServerRollouts {
  private readonly drivers = new Map<string, JobDriver>();
  private readonly running = new Map<string, Promise<void>>();

  constructor(private readonly options: ServerRolloutsOptions) {}

  /** Records a rollout of a published release to the matching units and starts it; returns its id. */
  async start(request: RolloutRequest): Promise<string> {
    const { fleet, jobs, releases } = this.options;
    const release = await loadRelease(releases.releaseDir(request.version)).catch((error: unknown) => {
      throw new Rtr7Error("RTR7_ERR_RELEASE", `release ${request.version}: ${describeError(error)}`, {
        hint: "Publish it first: `rtr7 fleet publish DIR --credential FILE`.",
      });
    });
    const known = jobs.inventory().map((unit) => ({ hostname: unit.hostname, address: "mqtt", port: 0 }));
    const chosen = selectUnits(known, request.settings.select).filter(
      (unit) => release.anyUnit || unit.hostname === release.hostname,
    );
    const id = createRollout({ store: fleet, release, units: chosen, settings: request.settings });
    this.run(id, request.version);
    return id;
  }

  /** Resumes every rollout the last run of the server left running. */
  resumeInterrupted(): string[] {
    const resumed: string[] = [];
    for (const rollout of this.options.fleet.rollouts())
      if (rollout.status === "running" && !this.running.has(rollout.id)) {
        this.options.log.info(
          { subsystem: "fleet-serve", rollout: rollout.id },
          `resuming rollout ${rollout.id} of ${rollout.version}`,
        );
        this.run(rollout.id, rollout.version);
        resumed.push(rollout.id);
      }
    return resumed;
  }

  private run(id: string, version: string): void {
    const { fleet, jobs, channel, publicUrl, log } = this.options;
    const rollout = fleet.requireRollout(id);
    const base = publicUrl().replace(/\/+$/, "");
    const driver = jobDriver({
      channel,
      store: jobs,
      rolloutId: id,
      release: {
        version,
        baseUrl: `${base}/releases/${encodeURIComponent(version)}/`,
        tlsFingerprint: this.options.tlsFingerprint,
      },
      soakMs: rollout.settings.soakMs,
      healthTimeoutMs: rollout.settings.healthTimeoutMs,
      // A unit is silent while it reboots and may report nothing new while it soaks.
      timeoutMs: Math.max(
        this.options.jobTimeoutMs,
        rollout.settings.soakMs + rollout.settings.healthTimeoutMs + 60_000,
      ),
      allowDowngrade: rollout.settings.allowDowngrade === true,
      backupUrl: (hostname) => `${base}/units/${hostname}/backups`,
      log,
    });
    this.drivers.set(id, driver);
    const done = runRollout({ store: fleet, rolloutId: id, driver, log })
      .then((ended) =>
        log.info(
          { subsystem: "fleet-serve", rollout: id, status: ended.status, reason: ended.reason },
          `rollout ${id}: ${ended.status}`,
        ),
      )
      .catch((error: unknown) =>
        log.error(
          { subsystem: "fleet-serve", rollout: id, err: describeError(error) },
          `rollout ${id} stopped`,
        ),
      )
      .finally(() => {
        this.drivers.delete(id);
        this.running.delete(id);
      });
    this.running.set(id, done);
  }

  /** Resolves when the rollout's run in this process has ended. */
  async settled(id: string): Promise<void> {
    await this.running.get(id);
  }

  /** Stops following every job (the server is going down); the rollouts stay "running" for the next start. */
  stop(): void {
    for (const driver of this.drivers.values()) driver.stop();
  }
}
