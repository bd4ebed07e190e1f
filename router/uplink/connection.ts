// The uplink's MQTT session with the server's broker: MQTT 3.1.1 over TLS,
// the server's certificate pinned (pinned-tls.ts: the handshake is done and
// checked before MQTT.js is handed the socket, so CONNECT and the password
// never reach an impostor), client id = user name = the unit's hostname,
// a persistent session (clean false), keepalive 30 s, and the last will
// rtr7/units/HOST/status = "offline", retained, QoS 1. MQTT.js's own
// reconnect is off: each attempt is a fresh pinned handshake and a fresh
// client, after a doubling backoff with jitter (1 s to 5 min, reset once
// connected). Each change of state (connected, lost) is logged once, not
// every attempt. Publishes made while away are queued (bounded) and sent on
// the next connect.
import { MqttClient } from "mqtt";
import type { TLSSocket } from "node:tls";
import { describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import { unitTopics } from "../../lib/wire/jobs.js";
import type { UplinkConfig } from "./config.js";
import { pinnedTlsConnect } from "./pinned-tls.js";

export interface Backoff {
  minMs: number;
  maxMs: number;
}

export const defaultBackoff: Backoff = { minMs: 1000, maxMs: 5 * 60_000 };

/** The wait before attempt `failures` (1, 2, ...): doubling from minMs up to maxMs, then between half and all of it. */
export function backoffDelay(failures: number, backoff: Backoff, random: () => number = Math.random): number {
  const full = Math.min(backoff.maxMs, backoff.minMs * 2 ** Math.min(30, Math.max(0, failures - 1)));
  return Math.round(full * (0.5 + random() * 0.5));
}

export interface Publication {
  topic: string;
  payload: string;
  retain: boolean;
}

export interface ConnectionOptions {
  config: UplinkConfig;
  log: Logger;
  /** Called on each CONNACK, before the queued publishes go out. */
  onConnect: (connection: UplinkConnection) => void;
  onMessage: (topic: string, payload: Buffer) => void;
  backoff?: Backoff;
  random?: () => number;
  keepaliveSeconds?: number;
}

const queueLimit = 256;

export class UplinkConnection {
  private client: MqttClient | undefined;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private state: "starting" | "connected" | "down" = "starting";
  private readonly queue: Publication[] = [];
  /** Publishes sent and not yet acknowledged (PUBACK). */
  private unacknowledged = 0;
  private readonly topics;

  constructor(private readonly options: ConnectionOptions) {
    this.topics = unitTopics(options.config.username);
  }

  get connected(): boolean {
    return this.state === "connected" && this.client?.connected === true;
  }

  start(): void {
    void this.attempt();
  }

  /** Says "offline" (retained) when connected, then disconnects; no reconnect after it. */
  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    if (this.connected) {
      this.publish({ topic: this.topics.status, payload: "offline", retain: true });
      await this.flush(2000);
    }
    this.stopped = true;
    const client = this.client;
    this.client = undefined;
    if (client) await client.endAsync(false).catch(() => undefined);
  }

  /** Publishes QoS 1 now, or queues it until the next connect. */
  publish(publication: Publication): void {
    const client = this.client;
    if (!this.connected || client === undefined) {
      this.enqueue(publication);
      return;
    }
    this.unacknowledged += 1;
    client.publish(
      publication.topic,
      publication.payload,
      { qos: 1, retain: publication.retain },
      (error) => {
        this.unacknowledged -= 1;
        if (error) this.enqueue(publication);
      },
    );
  }

  /** Resolves once every publish is acknowledged by the broker and none is queued, or after `timeoutMs`. */
  async flush(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.unacknowledged > 0 || this.queue.length > 0) {
      if (Date.now() >= until) return false;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return true;
  }

  /** The MQTT.js client of the current session (tests destroy its stream). */
  get session(): MqttClient | undefined {
    return this.client;
  }

  private enqueue(publication: Publication): void {
    // A retained topic needs only its newest value.
    if (publication.retain) {
      const index = this.queue.findIndex((queued) => queued.retain && queued.topic === publication.topic);
      if (index >= 0) this.queue.splice(index, 1);
    }
    this.queue.push(publication);
    if (this.queue.length > queueLimit) this.queue.shift();
  }

  private lost(why: string): void {
    if (this.stopped) return;
    if (this.state !== "down") {
      const { host, port } = this.options.config;
      this.options.log.warn(
        { peer: `${host}:${port}` },
        `${this.state === "connected" ? "lost" : "cannot reach"} the broker: ${why}; retrying with backoff (up to ${Math.round((this.options.backoff ?? defaultBackoff).maxMs / 1000)} s)`,
      );
      this.state = "down";
    }
    this.failures += 1;
    const delay = backoffDelay(this.failures, this.options.backoff ?? defaultBackoff, this.options.random);
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.attempt(), delay);
  }

  private async attempt(): Promise<void> {
    this.timer = undefined;
    if (this.stopped) return;
    const { config, log } = this.options;
    let socket: TLSSocket;
    try {
      socket = await pinnedTlsConnect({
        host: config.host,
        port: config.port,
        fingerprint: config.serverFingerprint,
      });
    } catch (error) {
      this.lost(describeError(error));
      return;
    }
    if (this.stopped) {
      socket.destroy();
      return;
    }
    const client = new MqttClient(() => socket, {
      protocolVersion: 4,
      clientId: config.username,
      username: config.username,
      password: config.password,
      clean: false,
      keepalive: this.options.keepaliveSeconds ?? 30,
      reconnectPeriod: 0,
      connectTimeout: 30_000,
      will: { topic: this.topics.status, payload: Buffer.from("offline"), qos: 1, retain: true },
    });
    this.client = client;
    let ended = false;
    const end = (why: string): void => {
      if (ended) return;
      ended = true;
      if (this.client === client) this.client = undefined;
      client.end(true);
      this.lost(why);
    };
    client.on("connect", () => {
      this.failures = 0;
      if (this.state !== "connected")
        log.info({ peer: `${config.host}:${config.port}` }, `connected to the broker as ${config.username}`);
      this.state = "connected";
      this.options.onConnect(this);
      for (const queued of this.queue.splice(0)) this.publish(queued);
    });
    client.on("message", (topic, payload) => this.options.onMessage(topic, payload));
    client.on("error", (error) => end(describeError(error)));
    client.on("close", () => end("the connection closed"));
  }

  subscribeJobs(): void {
    this.client?.subscribe(this.topics.jobNext, { qos: 1 }, (error) => {
      if (error) this.options.log.error({ err: error }, `cannot subscribe to ${this.topics.jobNext}`);
    });
  }
}
