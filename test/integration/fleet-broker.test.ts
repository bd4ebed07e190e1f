// The embedded broker of `rtr7 fleet serve` (updates/fleet/serve/broker.ts)
// on 127.0.0.1 with real MQTT.js clients over TLS: a unit's own state
// reaches the server retained; another unit's topics are refused (the
// server never sees the message, the unit's connection is closed), and so
// is another unit's job topic (SUBACK 0x80); wrong passwords and a client id
// that is not the user name are refused with their CONNACK codes, logged
// with the peer and never the password; a unit's will arrives when its
// socket dies.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { createLogger } from "../../lib/log.js";
import { unitTopics } from "../../lib/wire/jobs.js";
import { startEmbeddedBroker, type EmbeddedBroker } from "../../updates/fleet/serve/broker.js";
import { ensureServerCertificate } from "../../updates/fleet/serve/server-certificate.js";
import { UnitCredentials, serverUsername } from "../../updates/fleet/serve/unit-credentials.js";
import { scratchDir } from "../helpers/scratch.js";

interface Fixture {
  broker: EmbeddedBroker;
  cert: string;
  passwords: Record<string, string>;
  server: string;
  logLines: string[];
  connect(username: string, password: string, options?: IClientOptions): Promise<MqttClient>;
}

async function fixture(t: TestContext): Promise<Fixture> {
  const dir = await scratchDir(t, "broker");
  const credentials = new UnitCredentials(path.join(dir, "serve.sqlite"));
  t.after(() => credentials.close());
  const passwords: Record<string, string> = {
    "shop-1": await credentials.enrollUnit("shop-1"),
    "shop-2": await credentials.enrollUnit("shop-2"),
  };
  const tls = await ensureServerCertificate(dir, "localhost");
  const logLines: string[] = [];
  const log = createLogger({
    json: true,
    level: "debug",
    stream: { write: (line: string) => logLines.push(line) },
  });
  const broker = await startEmbeddedBroker({ host: "127.0.0.1", port: 0, tls, credentials, log });
  t.after(() => broker.close());
  const clients: MqttClient[] = [];
  t.after(() => Promise.all(clients.map((client) => client.endAsync(true))));
  const connect = async (
    username: string,
    password: string,
    options: IClientOptions = {},
  ): Promise<MqttClient> => {
    const client = await mqtt.connectAsync(broker.url, {
      username,
      password,
      clientId: username,
      ca: tls.cert,
      // The server's certificate is checked against itself (its CA), not against a name: units pin it.
      ...({ checkServerIdentity: () => undefined } as IClientOptions),
      reconnectPeriod: 0,
      connectTimeout: 5000,
      protocolVersion: 4,
      ...options,
    });
    clients.push(client);
    return client;
  };
  return {
    broker,
    cert: tls.cert,
    passwords,
    server: (await credentials.serverCredential()).password,
    logLines,
    connect,
  };
}

/** Every message `client` receives, as topic → payloads (with their retain flag). */
function collect(client: MqttClient): { topic: string; payload: string; retain: boolean }[] {
  const seen: { topic: string; payload: string; retain: boolean }[] = [];
  client.on("message", (topic, payload, packet) =>
    seen.push({ topic, payload: payload.toString(), retain: packet.retain }),
  );
  return seen;
}

async function until(what: string, condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const closedOf = (client: MqttClient): Promise<void> =>
  new Promise((resolve) => client.once("close", () => resolve()));

/** The SUBACK's return codes, refused ones (0x80) included (MQTT.js rejects when any is refused). */
async function subackCodes(client: MqttClient, filters: string[]): Promise<number[]> {
  try {
    return (await client.subscribeAsync(filters, { qos: 1 })).map((granted) => granted.qos);
  } catch (error) {
    const packet = (error as { packet?: { granted?: number[] } }).packet;
    if (!packet?.granted) throw error;
    return packet.granted;
  }
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test("a unit publishes its own status and state, and the server user sees them retained", async (t) => {
  const f = await fixture(t);
  const unit = await f.connect("shop-1", f.passwords["shop-1"] ?? "");
  const topics = unitTopics("shop-1");
  const state = JSON.stringify({
    hostname: "shop-1",
    version: "v1",
    slot: "a",
    trial: false,
    health: "",
    uptimeSeconds: 5,
    at: new Date().toISOString(),
  });
  await unit.publishAsync(topics.status, "online", { qos: 1, retain: true });
  await unit.publishAsync(topics.state, state, { qos: 1, retain: true });
  await unit.publishAsync(topics.jobUpdate("job-1"), '{"jobId":"job-1","state":"IN_PROGRESS"}', { qos: 1 });
  // The server subscribes after: it gets the retained ones.
  const server = await f.connect(serverUsername, f.server, { clientId: `${serverUsername}-test` });
  const seen = collect(server);
  await server.subscribeAsync(["rtr7/units/+/status", "rtr7/units/+/state"], { qos: 1 });
  await until("the retained status and state", () => seen.length >= 2);
  assert.deepEqual(
    seen.map((m) => [m.topic, m.payload, m.retain]).sort(),
    [
      [topics.state, state, true],
      [topics.status, "online", true],
    ].sort(),
  );
  // And the server may publish a unit's job, which the unit receives.
  const unitSeen = collect(unit);
  const granted = await unit.subscribeAsync(topics.jobNext, { qos: 1 });
  assert.equal(granted[0]?.qos, 1);
  await server.publishAsync(topics.jobNext, '{"jobId":"job-2"}', { qos: 1, retain: true });
  await until("the unit's job", () => unitSeen.length === 1);
  assert.equal(unitSeen[0]?.topic, topics.jobNext);
});

test("a unit is refused another unit's job topic and any wildcard, and never gets their messages", async (t) => {
  const f = await fixture(t);
  const unit = await f.connect("shop-1", f.passwords["shop-1"] ?? "");
  const seen = collect(unit);
  const granted = await subackCodes(unit, [
    unitTopics("shop-2").jobNext,
    "rtr7/units/+/jobs/next",
    "rtr7/#",
    "#",
    unitTopics("shop-1").jobNext,
  ]);
  assert.deepEqual(
    granted,
    [128, 128, 128, 128, 1],
    "SUBACK: 0x80 for each filter that is not the unit's own jobs/next",
  );
  const server = await f.connect(serverUsername, f.server);
  await server.publishAsync(unitTopics("shop-2").jobNext, '{"jobId":"for-shop-2"}', { qos: 1, retain: true });
  await server.publishAsync(unitTopics("shop-1").jobNext, '{"jobId":"for-shop-1"}', { qos: 1, retain: true });
  await until("shop-1's own job", () => seen.length >= 1);
  await pause(300);
  assert.deepEqual(
    seen.map((m) => m.topic),
    [unitTopics("shop-1").jobNext],
  );
  assert.equal(unit.connected, true, "a refused subscription leaves the connection up");
  assert.ok(
    f.logLines.some((line) => line.includes("subscription refused") && line.includes("shop-2/jobs/next")),
  );
});

test("a unit's publish to another unit's topic is dropped and its connection closed; the server never sees it", async (t) => {
  const f = await fixture(t);
  const server = await f.connect(serverUsername, f.server);
  const seen = collect(server);
  await server.subscribeAsync("rtr7/#", { qos: 1 });
  const unit = await f.connect("shop-1", f.passwords["shop-1"] ?? "");
  const closed = closedOf(unit);
  unit.publish(unitTopics("shop-2").state, '{"forged":true}', { qos: 1, retain: true });
  await closed;
  for (const topic of [unitTopics("shop-2").status, "rtr7/units/shop-2/jobs/next", "$SYS/forged"]) {
    const again = await f.connect("shop-1", f.passwords["shop-1"] ?? "");
    const gone = closedOf(again);
    again.publish(topic, "forged", { qos: 0 });
    await gone;
  }
  await pause(300);
  assert.deepEqual(seen, [], "the server user received nothing");
  // Nothing was retained either: a new subscriber finds nothing under shop-2.
  const late = await f.connect(serverUsername, f.server, { clientId: `${serverUsername}-late` });
  const lateSeen = collect(late);
  await late.subscribeAsync("rtr7/units/shop-2/#", { qos: 1 });
  await pause(300);
  assert.deepEqual(lateSeen, []);
  const refusals = f.logLines.filter((line) => line.includes("publish refused"));
  assert.equal(refusals.length, 4);
  const first = JSON.parse(refusals[0] ?? "{}") as Record<string, unknown>;
  assert.equal(first.subsystem, "broker");
  assert.equal(first.user, "shop-1");
  assert.match(String(first.peer), /^127\.0\.0\.1:\d+$/);
});

test("wrong passwords, unknown units and a client id that is not the user name are refused and logged without the password", async (t) => {
  const f = await fixture(t);
  const refused = async (
    username: string,
    password: string,
    clientId: string,
  ): Promise<number | undefined> => {
    try {
      await f.connect(username, password, { clientId });
    } catch (error) {
      return (error as { code?: number }).code;
    }
    assert.fail(`${username} (client id ${clientId}) was let in`);
  };
  const shop1 = f.passwords["shop-1"] ?? "";
  const shop2 = f.passwords["shop-2"] ?? "";
  const victim = await f.connect("shop-2", shop2);
  let victimClosed = false;
  victim.on("close", () => (victimClosed = true));
  assert.equal(
    await refused("shop-1", shop2, "shop-1"),
    4,
    "another unit's password: bad user name or password",
  );
  assert.equal(await refused("shop-1", shop1.slice(0, -1) + "!", "shop-1"), 4);
  assert.equal(await refused("shop-9", shop1, "shop-9"), 4, "unknown unit");
  assert.equal(
    await refused(serverUsername, shop1, serverUsername),
    4,
    "the server user with a unit's password",
  );
  assert.equal(
    await refused("shop-1", shop1, "shop-2"),
    2,
    "a client id that is another unit's: identifier rejected",
  );
  assert.equal(await refused("shop-1", shop1, ""), 2, "no client id");
  assert.equal(
    await refused(serverUsername, f.server, "shop-1"),
    2,
    "even the server may not take a unit's id",
  );
  await pause(200);
  assert.equal(victimClosed, false, "shop-1 logging in as client id shop-2 did not end shop-2's session");
  const lines = f.logLines.filter((line) => line.includes("login refused"));
  assert.equal(lines.length, 7);
  for (const line of lines) assert.match(line, /"peer":"127\.0\.0\.1:\d+"/);
  const all = f.logLines.join("\n");
  for (const secret of [shop1, shop2, f.server]) assert.ok(!all.includes(secret), "no password in the log");
  // The right credential still works.
  const unit = await f.connect("shop-1", shop1);
  assert.equal(unit.connected, true);
});

test("a unit's last will (offline, retained) arrives when its socket is destroyed", async (t) => {
  const f = await fixture(t);
  const server = await f.connect(serverUsername, f.server);
  const seen = collect(server);
  await server.subscribeAsync("rtr7/units/+/status", { qos: 1 });
  const status = unitTopics("shop-2").status;
  const unit = await f.connect("shop-2", f.passwords["shop-2"] ?? "", {
    will: { topic: status, payload: Buffer.from("offline"), qos: 1, retain: true },
  });
  await unit.publishAsync(status, "online", { qos: 1, retain: true });
  await until("online", () => seen.some((m) => m.payload === "online"));
  unit.stream.destroy();
  await until("the will", () => seen.some((m) => m.payload === "offline"));
  assert.deepEqual(
    seen.map((m) => [m.topic, m.payload]),
    [
      [status, "online"],
      [status, "offline"],
    ],
  );
  // Retained: a server that connects later sees the unit offline.
  const late = await f.connect(serverUsername, f.server, { clientId: `${serverUsername}-late` });
  const lateSeen = collect(late);
  await late.subscribeAsync(status, { qos: 1 });
  await until("the retained will", () => lateSeen.length === 1);
  assert.deepEqual([lateSeen[0]?.payload, lateSeen[0]?.retain], ["offline", true]);
});
