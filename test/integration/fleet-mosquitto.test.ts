// An external broker for the remote fleet: the real mosquitto 2.0 (Debian),
// started on a loopback port with the files writeMosquittoConfig makes
// (updates/fleet/serve/mosquitto-config.ts: the $7$ password file, the ACL
// patterns, TLS only). Real mosquitto_pub with unit A's credential: its own
// topic is delivered to the server user's subscriber; unit B's topic is
// acknowledged and dropped (the subscriber sees nothing); a wrong password
// is refused; A gets nothing from B's job topic and cannot take B's client id.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import path from "node:path";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { unitTopics } from "../../lib/wire/jobs.js";
import { writeMosquittoConfig } from "../../updates/fleet/serve/mosquitto-config.js";
import { ensureServerCertificate } from "../../updates/fleet/serve/server-certificate.js";
import { UnitCredentials, serverUsername } from "../../updates/fleet/serve/unit-credentials.js";
import { haveTool, run, start } from "../helpers/processes.js";
import { scratchDir } from "../helpers/scratch.js";

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function mosquittoFleet(t: TestContext) {
  const dir = await scratchDir(t, "mosquitto");
  const credentials = new UnitCredentials(path.join(dir, "serve.sqlite"));
  t.after(() => credentials.close());
  const passwords = {
    a: await credentials.enrollUnit("shop-a"),
    b: await credentials.enrollUnit("shop-b"),
  };
  const tls = await ensureServerCertificate(dir, "localhost");
  const port = await freePort();
  const files = await writeMosquittoConfig(path.join(dir, "mosquitto"), credentials, {
    host: "127.0.0.1",
    port,
    certFile: tls.certFile,
    keyFile: tls.keyFile,
    // As root mosquitto drops to its own user, who could not read these 0600 files in a 0700 scratch directory.
    ...(process.getuid?.() === 0 ? { runAs: "root" } : {}),
  });
  const broker = start("mosquitto", ["-v", "-c", files.configFile]);
  t.after(() => broker.stop());
  await broker.waitForLine(/mosquitto version .* running/, 5000);
  const server = (await credentials.serverCredential()).password;
  const clients: MqttClient[] = [];
  t.after(() => Promise.all(clients.map((client) => client.endAsync(true))));
  const connect = async (
    username: string,
    password: string,
    options: IClientOptions = {},
  ): Promise<MqttClient> => {
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, {
      username,
      password,
      clientId: username,
      ca: tls.cert,
      ...({ checkServerIdentity: () => undefined } as IClientOptions),
      reconnectPeriod: 0,
      connectTimeout: 5000,
      protocolVersion: 4,
      ...options,
    });
    clients.push(client);
    return client;
  };
  const publish = (username: string, password: string, topic: string, message: string) =>
    run(
      "mosquitto_pub",
      ["-h", "127.0.0.1", "-p", String(port), "--cafile", tls.certFile, "--insecure"].concat([
        "-u",
        username,
        "-P",
        password,
        "-i",
        username,
        "-q",
        "1",
        "-t",
        topic,
        "-m",
        message,
      ]),
      { timeoutMs: 5000 },
    );
  return { broker, passwords, server, connect, publish };
}

const reason = async (): Promise<string | undefined> => {
  for (const tool of ["mosquitto", "mosquitto_pub"])
    if (!(await haveTool(tool)))
      return `needs ${tool} (Debian mosquitto, mosquitto-clients): run scripts/setup.sh`;
  return undefined;
};
const skip = await reason();

test(
  "mosquitto with rtr7's files: a unit's own topic is delivered, another unit's is dropped, a wrong password refused",
  { skip },
  async (t) => {
    const f = await mosquittoFleet(t);
    const watcher = await f.connect(serverUsername, f.server);
    const seen: [string, string][] = [];
    watcher.on("message", (topic, payload) => seen.push([topic, payload.toString()]));
    await watcher.subscribeAsync("rtr7/#", { qos: 1 });

    await f.publish("shop-a", f.passwords.a, unitTopics("shop-b").state, "forged");
    await f.publish("shop-a", f.passwords.a, unitTopics("shop-b").jobNext, "forged");
    await f.publish("shop-a", f.passwords.a, unitTopics("shop-a").status, "online");
    const end = Date.now() + 3000;
    while (seen.length === 0 && Date.now() < end) await pause(20);
    await pause(300);
    assert.deepEqual(
      seen,
      [[unitTopics("shop-a").status, "online"]],
      "only shop-a's own topic reached the server user",
    );
    assert.match(f.broker.output(), /Denied PUBLISH .*rtr7\/units\/shop-b\/state/);

    await assert.rejects(
      f.publish("shop-a", f.passwords.b, unitTopics("shop-a").status, "x"),
      /not authori[sz]ed|refused/i,
      "shop-b's password does not log in shop-a",
    );
    await assert.rejects(
      f.publish("shop-a", "wrong-password", unitTopics("shop-a").status, "x"),
      /not authori[sz]ed|refused/i,
    );
    await pause(200);
    assert.equal(seen.length, 1);
  },
);

test(
  "mosquitto with rtr7's files: a unit gets nothing from another's job topic and cannot take its client id",
  { skip },
  async (t) => {
    const f = await mosquittoFleet(t);
    const server = await f.connect(serverUsername, f.server);
    const unitB = await f.connect("shop-b", f.passwords.b);
    const unitA = await f.connect("shop-a", f.passwords.a, { clientId: "shop-b" });
    await pause(300);
    assert.equal(unitB.connected, true, "shop-a's login as client id shop-b did not end shop-b's session");
    const seen: string[] = [];
    unitA.on("message", (topic) => seen.push(topic));
    let granted: number[];
    try {
      granted = (
        await unitA.subscribeAsync([unitTopics("shop-b").jobNext, unitTopics("shop-a").jobNext], { qos: 1 })
      ).map((g) => g.qos);
    } catch (error) {
      granted = (error as { packet?: { granted?: number[] } }).packet?.granted ?? [];
    }
    // mosquitto 2.0's ACL file does not refuse a subscription (SUBACK grants it); it refuses each delivery the ACL does not let the user read.
    assert.equal(granted[1], 1);
    await server.publishAsync(unitTopics("shop-b").jobNext, '{"jobId":"b"}', { qos: 1, retain: true });
    await server.publishAsync(unitTopics("shop-a").jobNext, '{"jobId":"a"}', { qos: 1, retain: true });
    const end = Date.now() + 3000;
    while (seen.length === 0 && Date.now() < end) await pause(20);
    await pause(300);
    assert.deepEqual(seen, [unitTopics("shop-a").jobNext]);
  },
);
