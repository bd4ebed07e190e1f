// The remote fleet's job driver (updates/fleet/serve/job-driver.ts) against
// a real aedes broker on 127.0.0.1, with simulated units: MQTT.js clients
// that publish their status and state and answer job documents as a unit's
// uplink would (steps, then SUCCEEDED or FAILED), or stay silent. The
// rollout engine drives them with the same settings as on the LAN: a
// rollout of three succeeds in order, a FAILED canary halts it, a silent
// unit ends TIMED_OUT, and a server that dies in the middle (its driver,
// MQTT connection and stores dropped) is followed by a new driver on the
// same SQLite files that finishes the rollout without sending any unit's
// job twice.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import path from "node:path";
import { Aedes } from "aedes";
import mqtt, { type MqttClient } from "mqtt";
import { silentLogger } from "../../lib/log.js";
import { parseJobDocument, unitTopics, type JobDocument } from "../../lib/wire/jobs.js";
import { runRollout } from "../../updates/fleet/engine.js";
import { createRollout } from "../../updates/fleet/rollout.js";
import { FleetStore, type RolloutSettings } from "../../updates/fleet/store.js";
import { JobChannel } from "../../updates/fleet/serve/job-channel.js";
import { jobDriver } from "../../updates/fleet/serve/job-driver.js";
import { JobStore } from "../../updates/fleet/serve/job-store.js";
import type { Release } from "../../updates/release.js";
import { scratchDir } from "../helpers/scratch.js";

const log = silentLogger();
const release: Release = {
  dir: "/data/releases/v2",
  version: "v2",
  anyUnit: true,
  hostname: undefined,
  manifest: { images: [] },
};
const jobRelease = { version: "v2", baseUrl: "https://127.0.0.1:8443/releases/v2/" };
const settings = (patch: Partial<RolloutSettings> = {}): RolloutSettings => ({
  select: "*",
  canary: 1,
  parallel: 1,
  maxFailures: 0,
  soakMs: 0,
  healthTimeoutMs: 1000,
  kexec: true,
  ...patch,
});

/** An aedes broker on 127.0.0.1 (port 0: any); stop() closes it and its clients' connections. */
async function brokerAt(port: number): Promise<{ url: string; port: number; stop: () => Promise<void> }> {
  const broker = await Aedes.createBroker();
  const server = net.createServer(broker.handle);
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  server.unref();
  const bound = (server.address() as net.AddressInfo).port;
  let stopped = false;
  return {
    url: `mqtt://127.0.0.1:${bound}`,
    port: bound,
    async stop() {
      if (stopped) return;
      stopped = true;
      // The broker first: it closes its clients' connections, which server.close waits for.
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function startBroker(t: TestContext): Promise<string> {
  const broker = await brokerAt(0);
  t.after(() => broker.stop());
  return broker.url;
}

type Behaviour = "succeed" | "fail" | "silent" | "gated" | "lost-final";

interface SimUnit {
  hostname: string;
  /** Job ids received, one entry per delivery of a non-empty document. */
  received: string[];
  /** Resolves once the unit has reported its first step of a job (gated units wait after it). */
  started: Promise<void>;
  release: () => void;
  client: MqttClient;
}

async function simUnit(
  t: TestContext,
  url: string,
  hostname: string,
  behaviour: Behaviour,
): Promise<SimUnit> {
  const topics = unitTopics(hostname);
  const client = await mqtt.connectAsync(url, {
    protocolVersion: 4,
    clientId: `unit-${hostname}`,
    will: { topic: topics.status, payload: Buffer.from("offline"), qos: 1, retain: true },
  });
  t.after(() => client.endAsync(true));
  let version = "v1";
  const state = () =>
    JSON.stringify({
      hostname,
      version,
      slot: version === "v1" ? "a" : "b",
      trial: false,
      health: "",
      uptimeSeconds: 5,
      at: new Date().toISOString(),
    });
  await client.publishAsync(topics.status, "online", { qos: 1, retain: true });
  await client.publishAsync(topics.state, state(), { qos: 1, retain: true });
  const received: string[] = [];
  let markStarted: () => void = () => undefined;
  const started = new Promise<void>((resolve) => (markStarted = resolve));
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const report = (document: JobDocument, update: Record<string, unknown>) =>
    client.publishAsync(
      topics.jobUpdate(document.jobId),
      JSON.stringify({ jobId: document.jobId, at: new Date().toISOString(), ...update }),
      { qos: 1 },
    );
  client.on("message", (_topic, payload) => {
    if (payload.length === 0) return;
    const document = parseJobDocument(payload);
    const seen = received.includes(document.jobId);
    received.push(document.jobId);
    if (seen || behaviour === "silent") return;
    void (async () => {
      await report(document, { state: "IN_PROGRESS", step: "health" });
      if (behaviour === "fail") {
        await report(document, {
          state: "FAILED",
          step: "healthy",
          reason: "gateway ping failed after the reboot; fell back to slot a",
          version,
        });
        return;
      }
      await report(document, {
        state: "IN_PROGRESS",
        step: "download",
        progress: { image: "root.img", bytesDone: 512, bytesTotal: 1024 },
      });
      markStarted();
      if (behaviour === "gated") await gate;
      await report(document, { state: "IN_PROGRESS", step: "commit" });
      version = document.release.version;
      await client.publishAsync(topics.state, state(), { qos: 1, retain: true });
      if (behaviour !== "lost-final") await report(document, { state: "SUCCEEDED", version });
    })();
  });
  await client.subscribeAsync(topics.jobNext, { qos: 1 });
  return { hostname, received, started, release, client };
}

interface Server {
  fleet: FleetStore;
  jobs: JobStore;
  channel: JobChannel;
}

async function openServer(dir: string, url: string): Promise<Server> {
  const fleet = FleetStore.open(path.join(dir, "fleet.sqlite"));
  const jobs = JobStore.open(path.join(dir, "jobs.sqlite"));
  const channel = await JobChannel.connect({
    brokerUrl: url,
    username: "rtr7-server",
    password: "x",
    store: jobs,
    log,
  });
  return { fleet, jobs, channel };
}

async function waitFor(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function driverFor(server: Server, rolloutId: string, timeoutMs = 5000) {
  return jobDriver({
    channel: server.channel,
    store: server.jobs,
    rolloutId,
    release: jobRelease,
    soakMs: 0,
    healthTimeoutMs: 1000,
    timeoutMs,
    allowDowngrade: false,
    log,
  });
}

async function setUp(t: TestContext, behaviours: Behaviour[]) {
  const url = await startBroker(t);
  const dir = await scratchDir(t, "job-driver");
  const units = await Promise.all(
    behaviours.map((behaviour, index) => simUnit(t, url, `shop-${index + 1}`, behaviour)),
  );
  const server = await openServer(dir, url);
  await waitFor(
    "every unit in the inventory",
    () => server.jobs.inventory().filter((unit) => unit.online && unit.version).length === units.length,
  );
  return { url, dir, units, server };
}

const plannedUnits = (count: number) =>
  Array.from({ length: count }, (_, index) => ({ hostname: `shop-${index + 1}`, address: "", port: 0 }));

async function retainedJob(url: string, hostname: string): Promise<string> {
  const client = await mqtt.connectAsync(url, { protocolVersion: 4 });
  let payload = "";
  client.on("message", (_topic, message) => (payload = message.toString()));
  await client.subscribeAsync(unitTopics(hostname).jobNext, { qos: 1 });
  await new Promise((resolve) => setTimeout(resolve, 100));
  await client.endAsync();
  return payload;
}

test("a rollout of three units succeeds, one wave after another, each job's steps in order", async (t) => {
  const { url, units, server } = await setUp(t, ["succeed", "succeed", "succeed"]);
  const id = createRollout({ store: server.fleet, release, units: plannedUnits(3), settings: settings() });
  const steps: string[] = [];
  const ended = await runRollout({
    store: server.fleet,
    rolloutId: id,
    driver: driverFor(server, id),
    log,
    observer: { onUnitStep: (unit, step) => steps.push(`${unit.hostname}:${step}`) },
  });
  assert.equal(ended.status, "finished");
  assert.deepEqual(
    server.fleet.units(id).map((unit) => [unit.hostname, unit.state, unit.fromVersion, unit.toVersion]),
    [
      ["shop-1", "succeeded", "v1", "v2"],
      ["shop-2", "succeeded", "v1", "v2"],
      ["shop-3", "succeeded", "v1", "v2"],
    ],
  );
  assert.deepEqual(
    steps,
    ["shop-1", "shop-2", "shop-3"].flatMap((host) =>
      ["queued", "health", "download", "commit"].map((step) => `${host}:${step}`),
    ),
  );
  assert.deepEqual(
    server.jobs.jobs(id).map((job) => job.state),
    ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED"],
  );
  assert.deepEqual(
    units.map((unit) => unit.received.length),
    [1, 1, 1],
  );
  await waitFor("the inventory to see v2", () =>
    server.jobs.inventory().every((unit) => unit.version === "v2"),
  );
  assert.equal(await retainedJob(url, "shop-1"), "", "the retained job is cleared once it ends");
  await server.channel.close();
});

test("a FAILED canary halts the rollout by the engine's threshold; its reason is kept", async (t) => {
  const { units, server } = await setUp(t, ["fail", "succeed", "succeed"]);
  const id = createRollout({ store: server.fleet, release, units: plannedUnits(3), settings: settings() });
  const ended = await runRollout({ store: server.fleet, rolloutId: id, driver: driverFor(server, id), log });
  assert.equal(ended.status, "halted");
  const [first, second, third] = server.fleet.units(id);
  assert.equal(first?.state, "failed");
  assert.match(first?.reason ?? "", /^FAILED: gateway ping failed/);
  assert.deepEqual([second?.state, third?.state], ["queued", "queued"]);
  assert.deepEqual(
    units.map((unit) => unit.received.length),
    [1, 0, 0],
  );
  await server.channel.close();
});

test("a unit that stays silent past the job's timeout ends TIMED_OUT and counts as failed", async (t) => {
  const { url, server } = await setUp(t, ["silent"]);
  const id = createRollout({ store: server.fleet, release, units: plannedUnits(1), settings: settings() });
  const started = Date.now();
  const ended = await runRollout({
    store: server.fleet,
    rolloutId: id,
    driver: driverFor(server, id, 300),
    log,
  });
  assert.ok(Date.now() - started < 3000);
  assert.equal(ended.status, "halted");
  assert.equal(server.jobs.jobs(id)[0]?.state, "TIMED_OUT");
  assert.match(server.fleet.units(id)[0]?.reason ?? "", /^TIMED_OUT: nothing heard from shop-1/);
  assert.equal(await retainedJob(url, "shop-1"), "");
  await server.channel.close();
});

test("a server killed mid-rollout resumes on the same SQLite files without sending any unit's job twice", async (t) => {
  const { url, dir, units, server } = await setUp(t, ["succeed", "gated", "succeed"]);
  const id = createRollout({ store: server.fleet, release, units: plannedUnits(3), settings: settings() });
  const first = driverFor(server, id);
  void runRollout({ store: server.fleet, rolloutId: id, driver: first, log });
  await units[1]?.started;
  // The kill: nothing more is heard or written by the first server.
  first.stop();
  server.channel.abandon();
  server.jobs.close();
  server.fleet.close();
  // shop-2 finishes while no server listens; the broker keeps its QoS 1 updates.
  units[1]?.release();
  await new Promise((resolve) => setTimeout(resolve, 200));

  const again = await openServer(dir, url);
  assert.deepEqual(
    again.fleet.units(id).map((unit) => unit.state),
    ["succeeded", "running", "queued"],
  );
  const ended = await runRollout({ store: again.fleet, rolloutId: id, driver: driverFor(again, id), log });
  assert.equal(ended.status, "finished");
  assert.deepEqual(
    again.fleet.units(id).map((unit) => [unit.state, unit.attempts]),
    [
      ["succeeded", 1],
      ["succeeded", 1],
      ["succeeded", 1],
    ],
  );
  assert.deepEqual(
    units.map((unit) => [...new Set(unit.received)]),
    [[`${id}-shop-1-1`], [`${id}-shop-2-1`], [`${id}-shop-3-1`]],
    "one job per unit",
  );
  // The finished unit's job is never sent again; the open one may be (the same job id) at the restart.
  assert.equal(units[0]?.received.length, 1);
  assert.equal(units[2]?.received.length, 1);
  assert.deepEqual(
    again.jobs.jobs(id).map((job) => job.state),
    ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED"],
  );
  await again.channel.close();
});

test("a broker restarted mid-job loses its retained job; the server publishes it again and the unit goes on", async (t) => {
  const first = await brokerAt(0);
  t.after(() => first.stop());
  const dir = await scratchDir(t, "job-driver-broker");
  const unit = await simUnit(t, first.url, "shop-1", "gated");
  const server = await openServer(dir, first.url);
  await waitFor("the unit in the inventory", () => server.jobs.unit("shop-1")?.version === "v1");
  const id = createRollout({ store: server.fleet, release, units: plannedUnits(1), settings: settings() });
  const done = runRollout({ store: server.fleet, rolloutId: id, driver: driverFor(server, id), log });
  await unit.started;
  await first.stop();
  const second = await brokerAt(first.port);
  t.after(() => second.stop());
  await waitFor("the job published again", () => unit.received.length === 2, 8000);
  unit.release();
  const ended = await done;
  assert.equal(ended.status, "finished");
  assert.deepEqual(
    unit.received,
    [`${id}-shop-1-1`, `${id}-shop-1-1`],
    "the same job, delivered again, not a new one",
  );
  assert.deepEqual(
    server.jobs.jobs(id).map((job) => job.state),
    ["SUCCEEDED"],
  );
  await server.channel.close();
});

test("a unit whose SUCCEEDED is lost but whose state says it runs the release committed ends SUCCEEDED", async (t) => {
  const { units, server } = await setUp(t, ["lost-final"]);
  const id = createRollout({ store: server.fleet, release, units: plannedUnits(1), settings: settings() });
  const ended = await runRollout({
    store: server.fleet,
    rolloutId: id,
    driver: driverFor(server, id, 2000),
    log,
  });
  assert.equal(ended.status, "finished");
  const [job] = server.jobs.jobs(id);
  assert.equal(job?.state, "SUCCEEDED");
  assert.match(job?.reason ?? "", /runs v2 committed/);
  assert.equal(units[0]?.received.length, 1);
  await server.channel.close();
});
