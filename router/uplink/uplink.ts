// The unit's uplink: connects out to the fleet server's broker
// (connection.ts), says "online" and its UnitState (retained) on each
// connect, when the state changes and every few minutes, and runs the
// update jobs it is handed (job-runner.ts) through an Installer. A job left
// in flight by the last boot is ended first (resumeAfterBoot). Topics and
// payloads are lib/wire/jobs.ts's (docs/jobs.md).
import { describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import { unitTopics, type UnitState } from "../../lib/wire/jobs.js";
import type { UplinkConfig } from "./config.js";
import { UplinkConnection, type Backoff } from "./connection.js";
import type { Installer } from "./installer.js";
import { JobRunner, type JobRunnerOptions } from "./job-runner.js";

export interface UplinkOptions {
  config: UplinkConfig;
  perm: string;
  installer: Installer;
  /** Tagged subsystem "uplink" by startUplink. */
  log: Logger;
  /** The UnitState is sent again this often (default 5 min). */
  stateEveryMs?: number;
  /** How often the state is checked for a change (default 15 s). */
  stateCheckMs?: number;
  backoff?: Backoff;
  runner?: Pick<JobRunnerOptions, "healthPollMs" | "download" | "progressEveryMs" | "deadlineMarginMs">;
}

export interface RunningUplink {
  connection: UplinkConnection;
  runner: JobRunner;
  /** Settles once the job left by the last boot has been ended or resumed. */
  resumed: Promise<void>;
  close(): Promise<void>;
}

export function startUplink(options: UplinkOptions): RunningUplink {
  const { config, installer } = options;
  const log = options.log.child({ subsystem: "uplink", peer: `${config.host}:${config.port}` });
  const topics = unitTopics(config.username);
  let lastSent = "";
  let lastSentAt = 0;
  let closed = false;
  /** The last reason the state could not be read: logged once, not every check. */
  let stateError: string | undefined;

  const unitState = async (): Promise<UnitState> => {
    const boot = await installer.bootState();
    const health = await installer
      .health()
      .catch((error: unknown) => `health unknown: ${describeError(error)}`);
    return {
      hostname: config.username,
      version: boot.version,
      slot: boot.slot,
      trial: boot.trial,
      health,
      uptimeSeconds: boot.uptimeSeconds,
      at: new Date().toISOString(),
      ...(runner.current === undefined ? {} : { jobId: runner.current }),
    };
  };

  /** Sends the state when `force`, when it changed, or when stateEveryMs passed. */
  const sendState = async (force: boolean): Promise<void> => {
    let state: UnitState;
    try {
      state = await unitState();
    } catch (error) {
      const why = describeError(error);
      if (why !== stateError) log.error(`cannot tell the unit's state: ${why}`);
      stateError = why;
      return;
    }
    stateError = undefined;
    const key = JSON.stringify({ ...state, at: "", uptimeSeconds: 0 });
    const due = Date.now() - lastSentAt >= (options.stateEveryMs ?? 5 * 60_000);
    if (!force && !due && key === lastSent) return;
    if (closed) return;
    lastSent = key;
    lastSentAt = Date.now();
    connection.publish({ topic: topics.state, payload: JSON.stringify(state), retain: true });
  };

  const runner = new JobRunner({
    installer,
    perm: options.perm,
    hostname: config.username,
    credential: { username: config.username, password: config.password },
    log,
    report: (update) =>
      connection.publish({
        topic: topics.jobUpdate(update.jobId),
        payload: JSON.stringify(update),
        retain: false,
      }),
    onJobChange: () => void sendState(true),
    beforeReboot: async () => {
      if (!(await connection.flush(5000))) log.warn("rebooting before the broker acknowledged every report");
    },
    ...options.runner,
  });

  let jobs: Promise<void> = Promise.resolve();
  const connection = new UplinkConnection({
    config,
    log,
    ...(options.backoff ? { backoff: options.backoff } : {}),
    onConnect: (session) => {
      session.publish({ topic: topics.status, payload: "online", retain: true });
      void sendState(true);
      session.subscribeJobs();
    },
    onMessage: (topic, payload) => {
      if (topic !== topics.jobNext) return;
      // One at a time, in order; a failure of one never stops the next.
      jobs = jobs
        .then(() => runner.handleDocument(payload))
        .catch((error: unknown) => log.error({ err: error }, `job handling failed: ${describeError(error)}`));
    },
  });

  const resumed = runner
    .resumeAfterBoot()
    .catch((error: unknown) =>
      log.error({ err: error }, `cannot end the last boot's job: ${describeError(error)}`),
    );
  jobs = resumed;
  connection.start();
  const ticker = setInterval(() => void sendState(false), options.stateCheckMs ?? 15_000);

  return {
    connection,
    runner,
    resumed,
    async close() {
      closed = true;
      clearInterval(ticker);
      await connection.stop();
    },
  };
}
