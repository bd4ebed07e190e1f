// `rtr7 fleet serve` in one process on loopback (updates/fleet/serve/
// serve.ts with the embedded broker): the workstation's publish and enroll
// against it, one simulated unit that logs in to the broker over TLS with
// its enrolled credential, uploads its backup with it, fetches the job's
// manifest from the release URL and reports SUCCEEDED, and a rollout
// started through the admin's API that ends finished; the API refuses a
// request without the admin's credential.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import https from "node:https";
import path from "node:path";
import mqtt from "mqtt";
import { isRtr7Error } from "../../lib/errors.js";
import { silentLogger } from "../../lib/log.js";
import { formatPublicKey, generateSigningKey } from "../../lib/trust/minisign.js";
import { signManifest } from "../../lib/trust/release-signature.js";
import { parseJobDocument, unitTopics } from "../../lib/wire/jobs.js";
import { embeddedBroker } from "../../updates/fleet/serve/brokers.js";
import { startFleetServer } from "../../updates/fleet/serve/serve.js";
import { serverRequest } from "../../updates/fleet/serve/server-client.js";
import { enrollAtServer, publishRelease } from "../../updates/fleet/serve/workstation.js";
import { scratchDir } from "../helpers/scratch.js";

const log = silentLogger();

function fetchText(url: string, headers: Record<string, string> = {}, method = "GET", body?: Buffer) {
  return new Promise<{ status: number; text: string }>((resolve, reject) => {
    const request = https.request(url, { method, headers, rejectUnauthorized: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString() }),
      );
    });
    request.on("error", reject);
    request.end(body);
  });
}

test("publish, enroll, and a rollout through the admin's API to a unit on the embedded broker", async (t) => {
  const dir = await scratchDir(t, "fleet-serve");
  const key = generateSigningKey();
  const keyFile = path.join(dir, "signing.pub");
  await writeFile(keyFile, formatPublicKey(key.publicKey));
  const releaseDir = path.join(dir, "release");
  await mkdir(releaseDir);
  const images = [];
  for (const [name, size] of [
    ["mbr.img", 512],
    ["boot.img", 4096],
    ["root.img", 65536],
  ] as const) {
    const bytes = randomBytes(size);
    await writeFile(path.join(releaseDir, name), bytes);
    images.push({ name, size, sha256: createHash("sha256").update(bytes).digest("hex") });
  }
  const manifest = Buffer.from(JSON.stringify({ anyUnit: true, version: "v2", images }));
  await writeFile(path.join(releaseDir, "manifest.json"), manifest);
  await writeFile(path.join(releaseDir, "manifest.json.minisig"), signManifest(manifest, key, Date.now()));

  const server = await startFleetServer({
    dataDir: path.join(dir, "data"),
    host: "127.0.0.1",
    port: 0,
    broker: embeddedBroker({ host: "127.0.0.1", port: 0, publicHost: "127.0.0.1" }),
    trustKeys: [keyFile],
    jobTimeoutMs: 5000,
    log,
  });
  t.after(() => server.close());
  const access = server.access;
  await assert.rejects(
    serverRequest({ ...access, credentials: { username: "admin", password: "guess" } }, "GET", "/api/units"),
    (error: unknown) => isRtr7Error(error, "RTR7_ERR_FLEET_AUTH"),
  );
  const published = await publishRelease(releaseDir, access, log);
  assert.equal(published.version, "v2");
  assert.equal(published.keyId, key.publicKey.keyId);

  const uplink = await enrollAtServer("shop-1", access);
  assert.equal(uplink.username, "shop-1");
  assert.equal(uplink.serverFingerprint, access.tlsFingerprint);
  const topics = unitTopics("shop-1");
  const unit = await mqtt.connectAsync(uplink.server, {
    protocolVersion: 4,
    clientId: "shop-1",
    username: uplink.username,
    password: uplink.password,
    rejectUnauthorized: false,
  });
  t.after(() => unit.endAsync(true));
  const state = (version: string) =>
    JSON.stringify({
      hostname: "shop-1",
      version,
      slot: "a",
      trial: false,
      health: "",
      uptimeSeconds: 1,
      at: new Date().toISOString(),
    });
  await unit.publishAsync(topics.status, "online", { qos: 1, retain: true });
  await unit.publishAsync(topics.state, state("v1"), { qos: 1, retain: true });
  const basic = `Basic ${Buffer.from(`shop-1:${uplink.password}`).toString("base64")}`;
  let backupStatus = 0;
  let fetchedManifest = "";
  unit.on("message", (_topic, payload) => {
    if (payload.length === 0) return;
    const job = parseJobDocument(payload);
    void (async () => {
      const say = (update: object) =>
        unit.publishAsync(
          topics.jobUpdate(job.jobId),
          JSON.stringify({ jobId: job.jobId, at: "", ...update }),
          { qos: 1 },
        );
      await say({ state: "IN_PROGRESS", step: "backup" });
      const gzip = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
      backupStatus = (
        await fetchText(
          job.backupUrl ?? "",
          { authorization: basic, "content-type": "application/gzip" },
          "PUT",
          gzip,
        )
      ).status;
      fetchedManifest = (await fetchText(`${job.release.baseUrl}manifest.json`)).text;
      await unit.publishAsync(topics.state, state("v2"), { qos: 1, retain: true });
      await say({ state: "SUCCEEDED", version: "v2" });
    })();
  });
  await unit.subscribeAsync(topics.jobNext, { qos: 1 });
  const until = Date.now() + 5000;
  while (!server.jobs.unit("shop-1")?.version) {
    assert.ok(Date.now() < until, "the unit's state reaches the inventory");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }

  const started = JSON.parse(
    (await serverRequest(access, "POST", "/api/rollouts", JSON.stringify({ version: "v2", soakMs: 0 }))).text,
  ) as { id: string; units: string[] };
  assert.deepEqual(started.units, ["shop-1"]);
  await server.rollouts.settled(started.id);
  const status = JSON.parse((await serverRequest(access, "GET", `/api/rollouts/${started.id}`)).text) as {
    rollout: { status: string };
    units: { state: string }[];
  };
  assert.equal(status.rollout.status, "finished");
  assert.deepEqual(
    status.units.map((entry) => entry.state),
    ["succeeded"],
  );
  assert.equal(backupStatus, 200);
  assert.equal(fetchedManifest, manifest.toString());
  assert.equal((await readdir(path.join(dir, "data", "backups", "shop-1"))).length, 1);
  const wrong = await fetchText(
    `${access.url}/units/shop-1/backups`,
    { authorization: "Basic c2hvcC0xOnc=", "content-type": "application/gzip" },
    "PUT",
    Buffer.from([0x1f, 0x8b]),
  );
  assert.equal(wrong.status, 401);
  const units = JSON.parse((await serverRequest(access, "GET", "/api/units")).text) as {
    units: { hostname: string; version: string }[];
  };
  assert.deepEqual(
    units.units.map((entry) => [entry.hostname, entry.version]),
    [["shop-1", "v2"]],
  );
});
