// The server's one MQTT connection to the broker (the embedded one or any
// MQTT 3.1.1 broker), as its own user, through MQTT.js. It publishes each
// unit's job document retained on rtr7/units/HOST/jobs/next (QoS 1) and
// clears it with an empty retained payload, and it hears everything the
// units say (lib/wire/jobs.ts's serverSubscriptions): `status` and `state`
// go into the job store's inventory, and each job update is checked
// (parseJobUpdate: a unit's payload is hostile input), recorded in the
// store in one transaction, and then handed to whoever follows that job.
// The session is persistent (a fixed client id, clean: false), so the
// broker keeps the QoS 1 updates a unit sends while the server is down and
// delivers them when it comes back: a restarted server misses nothing. A
// restarted broker may have lost its retained messages: at its start and
// on every reconnection the server publishes each open job's document again.
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { describeError } from "../../../lib/errors.js";
import type { Logger } from "../../../lib/log.js";
import {
  isFinalJobState,
  parseJobUpdate,
  parseUnitState,
  serverSubscriptions,
  topicHostname,
  unitTopics,
  type JobDocument,
  type JobUpdate,
  type UnitState,
} from "../../../lib/wire/jobs.js";
import type { JobStore } from "./job-store.js";

export interface JobChannelOptions {
  /** mqtt://, mqtts://, ws:// ... as MQTT.js takes it. */
  brokerUrl: string;
  username: string;
  password: string;
  store: JobStore;
  log: Logger;
  /** Default "rtr7-server" (the embedded broker takes the server user only as rtr7-server or rtr7-server-*): the same id after a restart finds the broker's session. */
  clientId?: string;
  /** TLS and other MQTT.js options (ca, rejectUnauthorized, ...). */
  mqttOptions?: Partial<IClientOptions>;
  now?: () => Date;
}

/** What a follower of one job hears: a recorded update, or a sign of life (the unit's state naming the job). */
export type JobEvent = { kind: "update"; update: JobUpdate } | { kind: "heard" };

/** A unit's state as it arrives (retained or live): what a follower checks the job's end against. */
export type UnitStateListener = (state: UnitState) => void;

export class JobChannel {
  private readonly followers = new Map<string, Set<(event: JobEvent) => void>>();
  private readonly unitListeners = new Map<string, Set<UnitStateListener>>();

  private constructor(
    private readonly client: MqttClient,
    private readonly options: JobChannelOptions,
  ) {
    client.on("message", (topic, payload, packet) => {
      try {
        this.receive(topic, payload, packet.retain);
      } catch (error) {
        options.log.warn(
          { subsystem: "fleet-serve", peer: topicHostname(topic), topic, err: describeError(error) },
          `skipped a message on ${topic}: ${describeError(error)}`,
        );
      }
    });
  }

  /** Connects and subscribes; resolves once the broker has acknowledged the subscriptions. */
  static async connect(options: JobChannelOptions): Promise<JobChannel> {
    const client = await mqtt.connectAsync(options.brokerUrl, {
      protocolVersion: 4,
      clientId: options.clientId ?? "rtr7-server",
      clean: false,
      username: options.username,
      password: options.password,
      reconnectPeriod: 1000,
      connectTimeout: 10_000,
      ...options.mqttOptions,
    });
    const channel = new JobChannel(client, options);
    client.on("connect", () => {
      options.log.info(
        { subsystem: "fleet-serve", peer: options.brokerUrl },
        "connected to the broker again",
      );
      void channel.subscribe().then(
        () => channel.republish(),
        (error: unknown) =>
          options.log.warn(
            { subsystem: "fleet-serve", peer: options.brokerUrl, err: describeError(error) },
            "subscribing again failed",
          ),
      );
    });
    client.on("error", (error) =>
      options.log.warn({ subsystem: "fleet-serve", peer: options.brokerUrl, err: error.message }, "broker"),
    );
    await channel.subscribe();
    // A broker started anew with this server (the embedded one) holds no retained job.
    await channel.republish();
    return channel;
  }

  private async subscribe(): Promise<void> {
    await this.client.subscribeAsync(serverSubscriptions, { qos: 1 });
  }

  /**
   * Publishes every open job's document again: a broker that restarted (the
   * embedded one keeps retained messages in memory) lost them, and a unit
   * takes the same job id again as the job it is already working on.
   */
  private async republish(): Promise<void> {
    for (const job of this.options.store.openJobs())
      await this.publishJob(job.hostname, job.document).catch((error: unknown) =>
        this.options.log.warn(
          { subsystem: "fleet-serve", peer: job.hostname, job: job.jobId, err: describeError(error) },
          `could not publish job ${job.jobId} again`,
        ),
      );
  }

  private now(): Date {
    return (this.options.now ?? (() => new Date()))();
  }

  private receive(topic: string, payload: Buffer, retained: boolean): void {
    const { store, log } = this.options;
    const hostname = topicHostname(topic);
    if (hostname === undefined) return;
    const topics = unitTopics(hostname);
    if (topic === topics.status) {
      const text = payload.toString("utf8");
      if (text !== "online" && text !== "offline")
        throw new Error(`status ${JSON.stringify(text.slice(0, 32))}`);
      store.noteStatus(hostname, text === "online", this.now());
      return;
    }
    if (topic === topics.state) {
      if (payload.length === 0) return;
      const state = parseUnitState(payload);
      if (state.hostname !== hostname) throw new Error(`the state names ${state.hostname}, not ${hostname}`);
      const sent = new Date(state.at);
      store.noteState(hostname, state, retained && !Number.isNaN(sent.getTime()) ? sent : this.now());
      if (state.jobId !== undefined && !retained) this.tell(state.jobId, { kind: "heard" });
      for (const listener of this.unitListeners.get(hostname) ?? []) listener(state);
      return;
    }
    const update = parseJobUpdate(payload);
    if (topic !== topics.jobUpdate(update.jobId))
      throw new Error(`an update for job ${update.jobId} on another job's topic`);
    const job = store.job(update.jobId);
    if (!job || job.hostname !== hostname) {
      log.debug(
        { subsystem: "fleet-serve", peer: hostname, job: update.jobId },
        "an update for no job of ours",
      );
      return;
    }
    if (isFinalJobState(job.state)) {
      log.debug(
        { subsystem: "fleet-serve", peer: hostname, job: update.jobId, state: update.state },
        `job ${update.jobId} already ended ${job.state}: update ignored`,
      );
      return;
    }
    const at = this.now().toISOString();
    store.updateJob(update.jobId, {
      state: update.state,
      lastHeardAt: at,
      ...(update.step !== undefined ? { step: update.step } : {}),
      ...(update.reason !== undefined ? { reason: update.reason } : {}),
      ...(update.version !== undefined ? { unitVersion: update.version } : {}),
      ...(isFinalJobState(update.state) ? { endedAt: at } : {}),
    });
    this.tell(update.jobId, { kind: "update", update });
  }

  private tell(jobId: string, event: JobEvent): void {
    for (const follower of this.followers.get(jobId) ?? []) follower(event);
  }

  /** Calls `follower` for each event of the job until the returned function is called. */
  follow(jobId: string, follower: (event: JobEvent) => void): () => void {
    let set = this.followers.get(jobId);
    if (!set) {
      set = new Set();
      this.followers.set(jobId, set);
    }
    set.add(follower);
    return () => {
      set.delete(follower);
      if (set.size === 0) this.followers.delete(jobId);
    };
  }

  /** Calls `listener` with each state the unit sends until the returned function is called. */
  followUnit(hostname: string, listener: UnitStateListener): () => void {
    let set = this.unitListeners.get(hostname);
    if (!set) {
      set = new Set();
      this.unitListeners.set(hostname, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.unitListeners.delete(hostname);
    };
  }

  /** Publishes the unit's job document retained, QoS 1; resolves once the broker has it. */
  async publishJob(hostname: string, document: JobDocument): Promise<void> {
    await this.client.publishAsync(unitTopics(hostname).jobNext, JSON.stringify(document), {
      qos: 1,
      retain: true,
    });
  }

  /** Clears the unit's retained job document (an empty retained payload). */
  async clearJob(hostname: string): Promise<void> {
    await this.client.publishAsync(unitTopics(hostname).jobNext, "", { qos: 1, retain: true });
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }

  /** Drops the connection at once, as a killed process would (tests). */
  abandon(): void {
    this.client.end(true);
  }
}
