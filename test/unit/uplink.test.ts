// router/uplink/: the unit's MQTT uplink against a real aedes broker over
// TLS and an HTTPS release server, both on loopback, with a fake installer
// (test/helpers/uplink-fixture.ts): the job's states in order through a
// simulated reboot, signed-release refusals with nothing written, malformed
// documents skipped, a cut download resumed with Range, a wrong server
// certificate refused before CONNECT, the last will, and power cuts at each
// step ending in a definite state.
import { after, before, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { createLogger, silentLogger, type Logger } from "../../lib/log.js";
import { addTrustedKey } from "../../lib/trust/trusted-keys.js";
import type { JobDocument, JobUpdate } from "../../lib/wire/jobs.js";
import { parseUplinkConfig, type UplinkConfig } from "../../router/uplink/config.js";
import { backoffDelay } from "../../router/uplink/connection.js";
import { jobRecordFile, writeJobRecord, type JobRecord } from "../../router/uplink/job-record.js";
import { JobRunner } from "../../router/uplink/job-runner.js";
import { startUplink, type RunningUplink } from "../../router/uplink/uplink.js";
import {
  chunkSize,
  FakeInstaller,
  generateSigningKey,
  makeRelease,
  makeUnitCertificate,
  Monitor,
  startBroker,
  startFileServer,
  type FileServer,
  type TestBroker,
} from "../helpers/uplink-fixture.js";
import { scratchDir } from "../helpers/scratch.js";

const fleetKey = generateSigningKey();
const foreignKey = generateSigningKey();
let broker: TestBroker;
let files: FileServer;
let monitor: Monitor;
let hostCount = 0;

before(async () => {
  const [brokerCert, filesCert] = await Promise.all([
    makeUnitCertificate("fleet.test"),
    makeUnitCertificate("releases.test"),
  ]);
  broker = await startBroker(brokerCert);
  files = await startFileServer(filesCert);
  for (const release of [
    makeRelease("good", "v2", fleetKey),
    makeRelease("foreign", "v2", foreignKey),
    makeRelease("unsigned", "v2", undefined),
  ])
    files.releases.set(release.name, release);
  monitor = await Monitor.connect(broker.port);
});

after(async () => {
  await monitor.close();
  await files.close();
  await broker.close();
});

interface Unit {
  hostname: string;
  perm: string;
  config: UplinkConfig;
  installer: FakeInstaller;
  start(): RunningUplink;
}

async function newUnit(
  t: TestContext,
  options: { trusts?: boolean; fingerprint?: string; log?: Logger } = {},
): Promise<Unit> {
  hostCount += 1;
  const hostname = `shop-${hostCount}`;
  const perm = await scratchDir(t, "uplink-perm");
  if (options.trusts !== false) await addTrustedKey(perm, fleetKey.publicKey);
  const password = `pw-${hostname}`;
  broker.passwords.set(hostname, password);
  const config = parseUplinkConfig(
    {
      server: `mqtts://127.0.0.1:${broker.port}`,
      username: hostname,
      password,
      serverFingerprint: options.fingerprint ?? broker.cert.fingerprint256,
    },
    hostname,
  );
  const installer = new FakeInstaller({
    version: "v1",
    slot: "a",
    trial: false,
    committedSlot: "a",
    uptimeSeconds: 5,
  });
  const unit: Unit = {
    hostname,
    perm,
    config,
    installer,
    start: () => {
      const uplink = startUplink({
        config,
        perm,
        installer,
        log: options.log ?? silentLogger(),
        backoff: { minMs: 50, maxMs: 400 },
        runner: { healthPollMs: 20, progressEveryMs: 0, download: { retryDelayMs: 20 } },
      });
      t.after(() => uplink.close());
      return uplink;
    },
  };
  return unit;
}

function job(unit: Unit, jobId: string, release = "good", extra: Partial<JobDocument> = {}): JobDocument {
  return {
    jobId,
    operation: "update",
    rolloutId: "r1",
    release: {
      version: "v2",
      baseUrl: `https://127.0.0.1:${files.port}/releases/${release}/`,
      tlsFingerprint: files.cert.fingerprint256,
    },
    soakMs: 100,
    healthTimeoutMs: 1000,
    timeoutMs: 60_000,
    allowDowngrade: false,
    createdAt: new Date().toISOString(),
    ...extra,
  };
}

const ended = (updates: Record<string, unknown>[]): Record<string, unknown> | undefined =>
  updates.find((update) => update.state !== "IN_PROGRESS");

const steps = (updates: Record<string, unknown>[]): string[] =>
  updates
    .filter((update) => update.state === "IN_PROGRESS" && update.progress === undefined)
    .map((update) => String(update.step));

async function readRecord(perm: string): Promise<JobRecord> {
  return JSON.parse(await readFile(path.join(perm, jobRecordFile), "utf8")) as JobRecord;
}

test("uplink.json is parsed as hostile input; backoff doubles from 1 s to 5 min with jitter", () => {
  const good = {
    server: "mqtts://fleet.example:8883",
    username: "shop-1",
    password: "pw",
    serverFingerprint: "ab:".repeat(31) + "ab",
  };
  assert.equal(parseUplinkConfig(good, "shop-1").port, 8883);
  for (const [bad, field] of [
    [{ ...good, server: "mqtt://fleet.example:1883" }, "mqtts"],
    [{ ...good, username: "shop-2" }, "username"],
    [{ ...good, password: "" }, "password"],
    [{ ...good, serverFingerprint: "AB:CD" }, "serverFingerprint"],
    [[], "object"],
  ] as const) {
    assert.throws(
      () => parseUplinkConfig(bad, "shop-1"),
      (error: Error & { code?: string }) =>
        error.code === "RTR7_ERR_UPLINK_CONFIG" &&
        error.message.includes(field) &&
        !error.message.includes('pw"'),
    );
  }
  const policy = { minMs: 1000, maxMs: 300_000 };
  assert.equal(
    backoffDelay(1, policy, () => 1),
    1000,
  );
  assert.equal(
    backoffDelay(2, policy, () => 1),
    2000,
  );
  assert.equal(
    backoffDelay(4, policy, () => 0),
    4000,
  );
  assert.equal(
    backoffDelay(40, policy, () => 1),
    300_000,
  );
});

test("a job runs QUEUED → IN_PROGRESS steps → reboot, and after the simulated reboot healthy, soak, commit, SUCCEEDED; never twice", async (t) => {
  const unit = await newUnit(t);
  const first = unit.start();
  await monitor.waitFor("online", () =>
    monitor.messages.some((m) => m.topic === `rtr7/units/${unit.hostname}/status` && m.payload === "online"),
  );
  const state = await monitor.waitFor("state", () =>
    monitor.messages.find((m) => m.topic === `rtr7/units/${unit.hostname}/state`),
  );
  assert.equal(
    state.retain,
    false,
    "delivered live to a subscriber (retained copies are flagged only for new subscribers)",
  );
  assert.deepEqual(
    { ...(JSON.parse(state.payload) as Record<string, unknown>), at: "" },
    { hostname: unit.hostname, version: "v1", slot: "a", trial: false, health: "", uptimeSeconds: 5, at: "" },
  );
  const doc = job(unit, "j-happy", "good", {
    backupUrl: `https://127.0.0.1:${files.port}/backups/${unit.hostname}`,
  });
  await monitor.publishJob(unit.hostname, doc);
  await monitor.waitFor("the reboot", () => unit.installer.calls.includes("reboot"));
  const before = monitor.updates(unit.hostname, "j-happy");
  await monitor.waitFor("reboot step reported", () =>
    steps(monitor.updates(unit.hostname, "j-happy")).includes("reboot"),
  );
  assert.deepEqual(steps(monitor.updates(unit.hostname, "j-happy")), [
    "health",
    "backup",
    "manifest",
    "download",
    "testboot",
    "reboot",
  ]);
  assert.ok(
    before.some((u) => (u.progress as { image?: string } | undefined)?.image === "root.img"),
    "download progress",
  );
  const release = files.releases.get("good");
  assert.deepEqual(unit.installer.images.get("root.img"), release?.files.get("root.img"));
  assert.deepEqual(unit.installer.images.get("boot.img"), release?.files.get("boot.img"));
  assert.equal(unit.installer.manifest?.manifest, release?.files.get("manifest.json")?.toString());
  assert.match(unit.installer.calls.find((c) => c.startsWith("testboot")) ?? "", /^testboot 121100$/);
  const backup = files.backups.get(`/backups/${unit.hostname}`);
  assert.equal(backup?.bytes, 4096);
  assert.equal(
    backup?.authorization,
    `Basic ${Buffer.from(`${unit.hostname}:pw-${unit.hostname}`).toString("base64")}`,
  );
  assert.equal((await readRecord(unit.perm)).step, "reboot");

  // The reboot: the uplink stops, the unit comes back on v2, on trial.
  await first.close();
  unit.installer.boot = { version: "v2", slot: "b", trial: true, committedSlot: "a", uptimeSeconds: 1 };
  const second = unit.start();
  await second.resumed;
  const done = await monitor.waitFor("SUCCEEDED", () => ended(monitor.updates(unit.hostname, "j-happy")));
  assert.deepEqual(done.state, "SUCCEEDED");
  assert.equal(done.version, "v2");
  assert.deepEqual(steps(monitor.updates(unit.hostname, "j-happy")).slice(6), ["healthy", "soak", "commit"]);
  assert.equal(unit.installer.calls.filter((c) => c === "commit").length, 1);
  assert.equal((await readRecord(unit.perm)).state, "SUCCEEDED");

  // The retained document comes again (a reconnect): not run twice.
  const callsBefore = unit.installer.calls.length;
  second.connection.session?.stream.destroy();
  await monitor.waitFor(
    "the final state again",
    () => monitor.updates(unit.hostname, "j-happy").filter((u) => u.state === "SUCCEEDED").length >= 2,
  );
  assert.equal(unit.installer.calls.length, callsBefore);
  assert.equal(steps(monitor.updates(unit.hostname, "j-happy")).filter((s) => s === "health").length, 1);
});

test("foreign-signed and unsigned releases, and any job to a unit that trusts no key, are REJECTED with nothing written", async (t) => {
  const unit = await newUnit(t);
  unit.start();
  await monitor.publishJob(unit.hostname, job(unit, "j-foreign", "foreign"));
  const foreign = await monitor.waitFor("foreign REJECTED", () =>
    ended(monitor.updates(unit.hostname, "j-foreign")),
  );
  assert.equal(foreign.state, "REJECTED");
  assert.match(String(foreign.reason), /key/);
  await monitor.publishJob(unit.hostname, job(unit, "j-unsigned", "unsigned"));
  const unsigned = await monitor.waitFor("unsigned REJECTED", () =>
    ended(monitor.updates(unit.hostname, "j-unsigned")),
  );
  assert.equal(unsigned.state, "REJECTED");
  assert.match(String(unsigned.reason), /not signed/);
  assert.deepEqual(unit.installer.writes(), []);

  const lonely = await newUnit(t, { trusts: false });
  lonely.start();
  await monitor.publishJob(lonely.hostname, job(lonely, "j-lonely", "good"));
  const refused = await monitor.waitFor("REJECTED", () =>
    ended(monitor.updates(lonely.hostname, "j-lonely")),
  );
  assert.equal(refused.state, "REJECTED");
  assert.match(String(refused.reason), /trusts no signing key/);
  assert.deepEqual(lonely.installer.writes(), []);
});

test("malformed job documents are skipped (REJECTED when the id reads) and the uplink answers the next job", async (t) => {
  const unit = await newUnit(t);
  unit.start();
  await monitor.publishJob(unit.hostname, "{not json");
  await monitor.publishJob(unit.hostname, JSON.stringify({ jobId: "j-bad", operation: "format-disk" }));
  const bad = await monitor.waitFor("REJECTED", () => ended(monitor.updates(unit.hostname, "j-bad")));
  assert.equal(bad.state, "REJECTED");
  assert.match(String(bad.reason), /operation/);
  await monitor.publishJob(unit.hostname, JSON.stringify({ jobId: "../../x", soakMs: -1 }));
  unit.installer.healthValue = "gateway ping: timeout";
  await monitor.publishJob(unit.hostname, job(unit, "j-next"));
  const next = await monitor.waitFor("FAILED", () => ended(monitor.updates(unit.hostname, "j-next")));
  assert.equal(next.state, "FAILED");
  assert.match(String(next.reason), /not healthy: gateway ping/);
  assert.deepEqual(unit.installer.writes(), []);
});

test("a cut download resumes with Range from where it stopped: the sink sees one stream, the server serves the image once", async (t) => {
  const unit = await newUnit(t);
  const release = makeRelease("cut", "v2", fleetKey, 2 * 1024 * 1024);
  files.releases.set("cut", release);
  files.cuts.set("/releases/cut/root.img", 5 * chunkSize + 1000);
  unit.start();
  await monitor.publishJob(unit.hostname, job(unit, "j-cut", "cut"));
  await monitor.waitFor("the reboot", () => unit.installer.calls.includes("reboot"));
  const size = release.files.get("root.img")?.length ?? 0;
  const served = files.served.get("/releases/cut/root.img") ?? 0;
  assert.ok(served >= size && served <= size + chunkSize, `served ${served} for ${size}`);
  assert.deepEqual(files.ranges.get("/releases/cut/root.img"), [`bytes=${5 * chunkSize + 1000}-`]);
  assert.deepEqual(unit.installer.images.get("root.img"), release.files.get("root.img"));
  assert.equal(unit.installer.calls.filter((c) => c === "openImage root.img").length, 1);
});

test("a server that ignores Range after a cut fails the job: the image is aborted, never finished or restarted", async (t) => {
  const unit = await newUnit(t);
  const release = makeRelease("norange", "v2", fleetKey);
  files.releases.set("norange", release);
  files.cuts.set("/releases/norange/root.img", 3 * chunkSize);
  files.ignoreRange.add("/releases/norange/root.img");
  unit.start();
  await monitor.publishJob(unit.hostname, job(unit, "j-norange", "norange"));
  const end = await monitor.waitFor("FAILED", () => ended(monitor.updates(unit.hostname, "j-norange")));
  assert.equal(end.state, "FAILED");
  assert.match(String(end.reason), /did not resume where the cut left off/);
  assert.ok(unit.installer.calls.some((c) => c.startsWith("abort root.img")));
  assert.ok(!unit.installer.calls.includes("finish root.img"));
  assert.ok(!unit.installer.calls.some((c) => c.startsWith("testboot")));
});

test("a trial that is not healthy in time is rolled back, and the next boot reports FAILED with the reason", async (t) => {
  const perm = await scratchDir(t, "uplink-gate");
  const doc = job({ hostname: "gate" } as Unit, "j-gate", "good", { healthTimeoutMs: 100 });
  await writeJobRecord(perm, {
    job: doc,
    state: "IN_PROGRESS",
    step: "reboot",
    from: { version: "v1", slot: "a" },
    updatedAt: "",
  });
  const installer = new FakeInstaller({
    version: "v2",
    slot: "b",
    trial: true,
    committedSlot: "a",
    uptimeSeconds: 1,
  });
  installer.healthValue = "gateway ping: no reply";
  const reported: JobUpdate[] = [];
  const runner = (): JobRunner =>
    new JobRunner({
      installer,
      perm,
      hostname: "gate",
      credential: { username: "gate", password: "x" },
      report: (update) => reported.push(update),
      log: silentLogger(),
      healthPollMs: 10,
    });
  installer.bootStateFailures = 3;
  await runner().resumeAfterBoot();
  assert.equal(installer.bootStateFailures, 0, "the update API not up yet at boot is waited for");
  assert.deepEqual(installer.calls, ["rollback"]);
  assert.deepEqual(
    reported.map((u) => u.step),
    ["healthy", "rollback"],
  );
  installer.boot = { version: "v1", slot: "a", trial: false, committedSlot: "a", uptimeSeconds: 1 };
  await runner().resumeAfterBoot();
  const end = reported.at(-1);
  assert.equal(end?.state, "FAILED");
  assert.equal(end?.reason, "fell back to v1: not healthy within 0.1 s: gateway ping: no reply");
  assert.equal(end?.version, "v1");
});

test("a wrong server certificate is refused after the handshake: no CONNECT reaches the broker", async (t) => {
  const impostor = await makeUnitCertificate("impostor.test");
  const lines: string[] = [];
  const log = createLogger({ json: true, stream: { write: (line: string) => lines.push(line) } });
  const unit = await newUnit(t, { fingerprint: impostor.fingerprint256, log });
  const handshakes = broker.handshakes;
  unit.start();
  await monitor.waitFor("three attempts", () => broker.handshakes >= handshakes + 3);
  assert.ok(!broker.connects.includes(unit.hostname), "the unit's CONNECT never reached the broker");
  assert.equal(monitor.messages.filter((m) => m.topic.startsWith(`rtr7/units/${unit.hostname}/`)).length, 0);
  const refusals = lines.filter((line) => line.includes("not the pinned"));
  assert.equal(refusals.length, 1, "logged once, not every attempt");
  const record = JSON.parse(refusals[0] ?? "{}") as { subsystem?: string; peer?: string };
  assert.equal(record.subsystem, "uplink");
  assert.equal(record.peer, `127.0.0.1:${broker.port}`);
  assert.ok(!lines.some((line) => line.includes(unit.config.password)), "the password is never logged");
});

test("the last will says offline when the unit's connection dies, and it comes back online", async (t) => {
  const unit = await newUnit(t);
  const uplink = unit.start();
  const statuses = (): string[] =>
    monitor.messages.filter((m) => m.topic === `rtr7/units/${unit.hostname}/status`).map((m) => m.payload);
  await monitor.waitFor("online", () => statuses().includes("online"));
  uplink.connection.session?.stream.destroy();
  await monitor.waitFor("offline", () => statuses().includes("offline"));
  await monitor.waitFor(
    "online again",
    () => statuses().lastIndexOf("online") > statuses().indexOf("offline"),
  );
});

test("a power cut at each step ends the job in a definite state after the unit comes back", async (t) => {
  const cases: { step: string; boot: "old" | "trial" | "new"; want: string; reason?: RegExp }[] = [
    ...["health", "backup", "manifest", "download", "testboot"].map((step) => ({
      step,
      boot: "old" as const,
      want: "FAILED",
      reason: new RegExp(`during step ${step}.*nothing was switched`),
    })),
    ...["reboot", "healthy", "soak", "commit"].map((step) => ({
      step,
      boot: "old" as const,
      want: "FAILED",
      reason: /^fell back to v1: the trial of v2 ended before its commit/,
    })),
    {
      step: "rollback",
      boot: "old",
      want: "FAILED",
      reason: /^fell back to v1: unhealthy during the soak: dns/,
    },
    { step: "reboot", boot: "trial", want: "SUCCEEDED" },
    { step: "soak", boot: "trial", want: "SUCCEEDED" },
    { step: "commit", boot: "new", want: "SUCCEEDED" },
  ];
  for (const [index, item] of cases.entries()) {
    const perm = await scratchDir(t, "uplink-cut");
    const doc = job({ hostname: "cut" } as Unit, `j-cut-${index}`);
    await writeJobRecord(perm, {
      job: doc,
      state: "IN_PROGRESS",
      step: item.step,
      from: { version: "v1", slot: "a" },
      ...(item.step === "rollback" ? { trialFailure: "unhealthy during the soak: dns" } : {}),
      updatedAt: "",
    });
    const installer = new FakeInstaller(
      item.boot === "old"
        ? { version: "v1", slot: "a", trial: false, committedSlot: "a", uptimeSeconds: 1 }
        : {
            version: "v2",
            slot: "b",
            trial: item.boot === "trial",
            committedSlot: item.boot === "new" ? "b" : "a",
            uptimeSeconds: 1,
          },
    );
    const reported: JobUpdate[] = [];
    const runner = new JobRunner({
      installer,
      perm,
      hostname: "cut",
      credential: { username: "cut", password: "x" },
      report: (update) => reported.push(update),
      log: silentLogger(),
      healthPollMs: 10,
    });
    await runner.resumeAfterBoot();
    const end = reported.at(-1);
    assert.equal(end?.state, item.want, `${item.step} / ${item.boot}: ${JSON.stringify(reported)}`);
    if (item.reason) assert.match(end?.reason ?? "", item.reason, item.step);
    assert.equal((await readRecord(perm)).state, item.want);
    assert.equal(runner.current, undefined);
    // Started once more (another reboot): the end is reported again, nothing is run.
    reported.length = 0;
    const calls = installer.calls.length;
    await runner.resumeAfterBoot();
    assert.deepEqual(
      reported.map((u) => u.state),
      [item.want],
    );
    assert.equal(installer.calls.length, calls);
  }
});
