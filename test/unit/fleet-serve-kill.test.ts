// `rtr7 fleet serve` as a process (the real command, embedded broker, on
// loopback) SIGKILLed in the middle of a rollout and started again on the
// same data directory: the broker dies with it (and its retained messages),
// the simulated units reconnect and publish their state again, the server
// publishes the open job again and resumes the rollout, and every unit
// takes exactly one job: none is updated twice.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { access, mkdir, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import mqtt from "mqtt";
import { silentLogger } from "../../lib/log.js";
import { formatPublicKey, generateSigningKey } from "../../lib/trust/minisign.js";
import { signManifest } from "../../lib/trust/release-signature.js";
import { parseJobDocument, unitTopics } from "../../lib/wire/jobs.js";
import { readServerAccess } from "../../updates/fleet/serve/admin-credential.js";
import { serverRequest, type ServerAccess } from "../../updates/fleet/serve/server-client.js";
import { enrollAtServer, publishRelease } from "../../updates/fleet/serve/workstation.js";
import { cliEntry } from "../helpers/paths.js";
import { scratchDir } from "../helpers/scratch.js";

const log = silentLogger();

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function serve(t: TestContext, args: string[]): ChildProcess {
  const child = spawn(process.execPath, [cliEntry, "fleet", "serve", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  t.after(() => child.kill("SIGKILL"));
  return child;
}

test("fleet serve SIGKILLed mid-rollout resumes on its data directory without updating any unit twice", async (t) => {
  const dir = await scratchDir(t, "fleet-serve-kill");
  const data = path.join(dir, "data");
  const key = generateSigningKey();
  const keyFile = path.join(dir, "signing.pub");
  await writeFile(keyFile, formatPublicKey(key.publicKey));
  const releaseDir = path.join(dir, "release");
  await mkdir(releaseDir);
  const images = [];
  for (const [name, size] of [
    ["mbr.img", 512],
    ["boot.img", 4096],
    ["root.img", 8192],
  ] as const) {
    const bytes = randomBytes(size);
    await writeFile(path.join(releaseDir, name), bytes);
    images.push({ name, size, sha256: createHash("sha256").update(bytes).digest("hex") });
  }
  const manifest = Buffer.from(JSON.stringify({ anyUnit: true, version: "v2", images }));
  await writeFile(path.join(releaseDir, "manifest.json"), manifest);
  await writeFile(path.join(releaseDir, "manifest.json.minisig"), signManifest(manifest, key, Date.now()));

  const [httpsPort, brokerPort] = [await freePort(), await freePort()];
  const args = [
    "--data",
    data,
    "--listen",
    `127.0.0.1:${httpsPort}`,
    "--broker-listen",
    `127.0.0.1:${brokerPort}`,
    "--trust-key",
    keyFile,
    "--job-timeout",
    "20s",
  ];
  const up = async (): Promise<ServerAccess> => {
    let server: ServerAccess | undefined;
    await until("the server to answer", async () => {
      server = await readServerAccess(path.join(data, "admin-credential.json")).catch(() => undefined);
      if (!server) return false;
      return serverRequest(server, "GET", "/api/units", undefined, 1000).then(
        () => true,
        () => false,
      );
    });
    return server as ServerAccess;
  };
  let child = serve(t, args);
  let server = await up();
  await publishRelease(releaseDir, server, log);

  const received = new Map<string, string[]>();
  const gates = new Map<string, () => void>();
  let secondStarted: () => void = () => undefined;
  const started = new Promise<void>((resolve) => (secondStarted = resolve));
  for (const hostname of ["shop-1", "shop-2", "shop-3"]) {
    const uplink = await enrollAtServer(hostname, server);
    const topics = unitTopics(hostname);
    let version = "v1";
    const state = () =>
      JSON.stringify({
        hostname,
        version,
        slot: "a",
        trial: false,
        health: "",
        uptimeSeconds: 1,
        at: new Date().toISOString(),
      });
    const unit = await mqtt.connectAsync(uplink.server, {
      protocolVersion: 4,
      clientId: hostname,
      username: hostname,
      password: uplink.password,
      rejectUnauthorized: false,
      reconnectPeriod: 200,
    });
    t.after(() => unit.endAsync(true));
    const announce = () => {
      void unit.publishAsync(topics.status, "online", { qos: 1, retain: true });
      void unit.publishAsync(topics.state, state(), { qos: 1, retain: true });
    };
    unit.on("connect", announce);
    announce();
    received.set(hostname, []);
    const gate = new Promise<void>((resolve) => gates.set(hostname, resolve));
    unit.on("message", (_topic, payload) => {
      if (payload.length === 0) return;
      const job = parseJobDocument(payload);
      const seen = received.get(hostname) ?? [];
      const again = seen.includes(job.jobId);
      seen.push(job.jobId);
      if (again) return;
      void (async () => {
        await unit.publishAsync(
          topics.jobUpdate(job.jobId),
          JSON.stringify({ jobId: job.jobId, state: "IN_PROGRESS", step: "download", at: "" }),
          { qos: 1 },
        );
        if (hostname === "shop-2") {
          secondStarted();
          await gate;
        }
        version = job.release.version;
        await unit.publishAsync(topics.state, state(), { qos: 1, retain: true });
        await unit.publishAsync(
          topics.jobUpdate(job.jobId),
          JSON.stringify({ jobId: job.jobId, state: "SUCCEEDED", version, at: "" }),
          { qos: 1 },
        );
      })();
    });
    await unit.subscribeAsync(topics.jobNext, { qos: 1 });
  }
  await until("three units in the inventory", async () => {
    const units = JSON.parse((await serverRequest(server, "GET", "/api/units")).text) as {
      units: { version?: string }[];
    };
    return units.units.filter((unit) => unit.version === "v1").length === 3;
  });
  const rollout = JSON.parse(
    (
      await serverRequest(
        server,
        "POST",
        "/api/rollouts",
        JSON.stringify({ version: "v2", canary: 1, parallel: 1, soakMs: 0 }),
      )
    ).text,
  ) as { id: string };
  await started;

  child.kill("SIGKILL");
  await new Promise((resolve) => child.once("exit", resolve));
  gates.get("shop-2")?.();
  child = serve(t, args);
  server = await up();
  const status = async () =>
    JSON.parse((await serverRequest(server, "GET", `/api/rollouts/${rollout.id}`)).text) as {
      rollout: { status: string };
      units: { hostname: string; state: string; attempts: number }[];
    };
  await until("the rollout to finish", async () => (await status()).rollout.status === "finished", 15_000);
  const ended = await status();
  assert.deepEqual(
    ended.units.map((unit) => [unit.hostname, unit.state, unit.attempts]),
    [
      ["shop-1", "succeeded", 1],
      ["shop-2", "succeeded", 1],
      ["shop-3", "succeeded", 1],
    ],
  );
  for (const [hostname, jobs] of received)
    assert.deepEqual([...new Set(jobs)], [`${rollout.id}-${hostname}-1`], `${hostname} took one job`);
  await access(path.join(data, "jobs.sqlite"));
});
