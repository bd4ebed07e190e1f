// The pin policy (updates/client/unit-connection.ts) and the pinned
// transport: a first contact pins what it sees, a pinned unit is only
// reached over HTTPS, a unit without HTTPS is warned about once (not with
// --insecure-http), the inventory keeps every other field; and a peer with
// another certificate gets no request at all.
import { test } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { createLogger } from "../../lib/log.js";
import { isRtr7Error } from "../../lib/errors.js";
import { makeUnitCertificate } from "../../lib/tls/unit-certificate.js";
import { nodeHttpTransport, readText } from "../../updates/client/transport.js";
import { PlainHttpNotice, trustUnit, unitConnection } from "../../updates/client/unit-connection.js";
import {
  addInventoryUnit,
  inventoryUnit,
  readInventory,
  recordUnitPin,
} from "../../updates/fleet/inventory.js";
import { scratchDir } from "../helpers/scratch.js";

const fingerprintA = Array.from({ length: 32 }, (_v, index) => (index + 16).toString(16).toUpperCase()).join(
  ":",
);
const fingerprintB = fingerprintA.replace(/^10/, "FF");

function capturedLog(): { log: ReturnType<typeof createLogger>; lines: () => Record<string, unknown>[] } {
  const text: string[] = [];
  const log = createLogger({
    json: true,
    level: "debug",
    stream: { write: (line: string) => text.push(line) },
  });
  return { log, lines: () => text.map((line) => JSON.parse(line) as Record<string, unknown>) };
}

test("a first contact pins the certificate it sees, adding an entry; then the pin is used unasked", async (t) => {
  const file = path.join(await scratchDir(t, "pins"), "fleet.json");
  const { log, lines } = capturedLog();
  const asked: string[] = [];
  const endpoint = await unitConnection({
    hostname: "shop-1",
    address: "10.1.0.2",
    inventoryFile: file,
    log,
    fingerprint: (host, port) => {
      asked.push(`${host}:${port}`);
      return Promise.resolve(fingerprintA);
    },
  });
  assert.deepEqual(asked, ["10.1.0.2:443"]);
  assert.deepEqual(endpoint.tls, { fingerprint256: fingerprintA, hostname: "shop-1" });
  assert.deepEqual(await readInventory(file), [
    { hostname: "shop-1", address: "10.1.0.2", tlsFingerprint: fingerprintA },
  ]);
  assert.ok(lines().some((line) => line.event === "tls-pinned" && line.fingerprint === fingerprintA));

  const again = await unitConnection({
    hostname: "shop-1",
    inventoryFile: file,
    fingerprint: () => assert.fail("a pinned unit is not asked again"),
  });
  assert.equal(again.host, "10.1.0.2");
  assert.equal(again.tls?.fingerprint256, fingerprintA);
});

test("a unit without a pin or HTTPS goes on over plain HTTP, warned once per run, silent with --insecure-http", async (t) => {
  const file = path.join(await scratchDir(t, "pins"), "fleet.json");
  const { log, lines } = capturedLog();
  const notice = new PlainHttpNotice();
  const refused = () => Promise.reject(Object.assign(new Error("refused"), { code: "ECONNREFUSED" }));
  for (const hostname of ["old-1", "old-2"]) {
    const endpoint = await unitConnection({
      hostname,
      inventoryFile: file,
      log,
      notice,
      fingerprint: refused,
    });
    assert.equal(endpoint.tls, undefined);
    assert.equal(endpoint.host, hostname);
  }
  assert.equal(lines().filter((line) => line.event === "plain-http").length, 1);
  assert.deepEqual(await readInventory(file), []);

  const quiet = capturedLog();
  await unitConnection({
    hostname: "old-3",
    inventoryFile: file,
    log: quiet.log,
    notice: new PlainHttpNotice(),
    insecureHttp: true,
    fingerprint: refused,
  });
  assert.equal(quiet.lines().filter((line) => line.event === "plain-http").length, 0);
});

test("pins keep the entry's other fields, survive a re-add, and many at once are all written", async (t) => {
  const file = path.join(await scratchDir(t, "pins"), "fleet.json");
  await addInventoryUnit(file, {
    hostname: "shop-7",
    address: "10.2.0.7",
    mac: "52:54:00:AA:BB:07",
    disk: "sda",
  });
  assert.equal(await recordUnitPin(file, { hostname: "shop-7" }, fingerprintA.toLowerCase()), undefined);
  await addInventoryUnit(file, { hostname: "shop-7", address: "10.2.0.8", serial: "/dev/ttyUSB0" });
  assert.deepEqual(await inventoryUnit(file, "shop-7"), {
    hostname: "shop-7",
    address: "10.2.0.8",
    serial: "/dev/ttyUSB0",
    tlsFingerprint: fingerprintA,
  });
  const trusted = await trustUnit({
    hostname: "shop-7",
    inventoryFile: file,
    fingerprint: (host) => (host === "10.2.0.8" ? Promise.resolve(fingerprintB) : assert.fail(host)),
  });
  assert.deepEqual(trusted, {
    hostname: "shop-7",
    address: "10.2.0.8",
    previous: fingerprintA,
    current: fingerprintB,
  });

  const names = Array.from({ length: 20 }, (_v, index) => `unit-${index}`);
  await Promise.all(
    names.map((hostname) => recordUnitPin(file, { hostname, address: "10.9.0.1" }, fingerprintA)),
  );
  assert.equal((await readInventory(file)).filter((unit) => unit.tlsFingerprint === fingerprintA).length, 20);
});

test("the transport sends nothing to a peer with another certificate, and talks to the pinned one", async (t) => {
  const unit = await makeUnitCertificate("lab1");
  const other = await makeUnitCertificate("lab1");
  let requests = 0;
  const server = https.createServer({ key: unit.key, cert: unit.cert }, (_request, response) => {
    requests += 1;
    response.end("ok");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;
  const transport = nodeHttpTransport();
  const request = {
    host: "127.0.0.1",
    port,
    method: "GET" as const,
    path: "/update/features",
    step: "GET /update/features",
    headers: { authorization: "Basic c2VjcmV0" },
    timeoutMs: 5000,
  };
  await assert.rejects(
    transport({ ...request, tls: { fingerprint256: other.fingerprint256, hostname: "lab1" } }),
    (error: unknown) => {
      assert.ok(isRtr7Error(error, "RTR7_ERR_UNIT_CERT_CHANGED"));
      assert.ok(error.message.includes(other.fingerprint256) && error.message.includes(unit.fingerprint256));
      assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.match(error.hint, /rtr7 fleet trust lab1/);
      return true;
    },
  );
  assert.equal(requests, 0);
  const answer = await transport({
    ...request,
    tls: { fingerprint256: unit.fingerprint256, hostname: "lab1" },
  });
  assert.equal(answer.status, 200);
  assert.equal(await readText(answer), "ok");
  assert.equal(requests, 1);
});
