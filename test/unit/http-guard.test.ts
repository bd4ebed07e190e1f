// The unit's HTTP guard (router/http-guard/): sources, Host names,
// cross-site changes and page headers through fastify's inject(); the
// listen config from files; connection caps on a real socket server; the
// wrong-password limiter on a fake clock.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { once } from "node:events";
import Fastify from "fastify";
import { createLogger } from "../../lib/log.js";
import { installErrorHandlers } from "../../lib/http-error.js";
import { capConnections } from "../../router/http-guard/connection-caps.js";
import { readListenConfig } from "../../router/http-guard/listen-config.js";
import { LoginLimiter } from "../../router/http-guard/login-limiter.js";
import { installRequestGuard, securityHeaders } from "../../router/http-guard/request-guard.js";
import { localSourcePolicy } from "../../router/http-guard/sources.js";
import { scratchDir } from "../helpers/scratch.js";

function recordingLog() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    json: true,
    level: "debug",
    stream: { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) },
  });
  return { log, lines };
}

async function guardedApp(allowSources: string[] = []) {
  const { log } = recordingLog();
  const app = Fastify({ logger: false });
  const state = { commits: 0 };
  installErrorHandlers(app, { log });
  installRequestGuard(app, {
    sources: localSourcePolicy(allowSources),
    hostNames: () => new Set(["router7", "router7.local", "10.0.0.1", "127.0.0.1", "localhost", "::1"]),
    log,
  });
  app.get("/", () => Promise.resolve("<html>status</html>"));
  app.post("/update/commit", () => {
    state.commits += 1;
    return Promise.resolve("committed");
  });
  await app.ready();
  return { app, state };
}

test("sources: loopback, private and link-local are answered; the internet is not, unless listen.json names it", async (t) => {
  const { app } = await guardedApp(["203.0.113.0/24"]);
  t.after(() => app.close());
  const from = (remoteAddress: string) =>
    app.inject({ method: "GET", url: "/", remoteAddress, headers: { host: "10.0.0.1" } });
  for (const local of [
    "127.0.0.1",
    "10.9.8.7",
    "172.16.0.1",
    "192.168.1.20",
    "169.254.3.4",
    "::1",
    "fe80::1",
    "fd00::5",
    "::ffff:192.168.1.2",
    "203.0.113.9",
  ])
    assert.equal((await from(local)).statusCode, 200, local);
  for (const remote of [
    "8.8.8.8",
    "100.64.0.1",
    "172.32.0.1",
    "2001:db8::1",
    "::ffff:8.8.8.8",
    "203.0.114.1",
  ]) {
    const reply = await from(remote);
    assert.equal(reply.statusCode, 403, remote);
    assert.equal(reply.json<{ code: string }>().code, "RTR7_ERR_HTTP_SOURCE");
  }
});

test("Host: only the unit's names and addresses (DNS rebinding gets 421)", async (t) => {
  const { app } = await guardedApp();
  t.after(() => app.close());
  const withHost = (host: string) =>
    app.inject({ method: "GET", url: "/", remoteAddress: "10.0.0.2", headers: { host } });
  for (const host of ["router7", "ROUTER7.local", "10.0.0.1:80", "127.0.0.1:8077", "[::1]:80", "localhost"])
    assert.equal((await withHost(host)).statusCode, 200, host);
  const rebound = await withHost("evil.example");
  assert.equal(rebound.statusCode, 421);
  assert.equal(rebound.json<{ code: string }>().code, "RTR7_ERR_HTTP_HOST");
  const long = await withHost("a".repeat(4000));
  assert.ok(long.json<{ message: string }>().message.length < 200, "the error quotes the whole Host");
});

test("a cross-site POST gets 403 and changes nothing; the unit's own page and tools may post", async (t) => {
  const { app, state } = await guardedApp();
  t.after(() => app.close());
  const commit = (headers: Record<string, string>) =>
    app.inject({
      method: "POST",
      url: "/update/commit",
      remoteAddress: "10.0.0.2",
      headers: { host: "10.0.0.1", ...headers },
    });
  const hostiles: Record<string, string>[] = [
    { origin: "http://evil.example" },
    { "sec-fetch-site": "cross-site" },
    { origin: "null" },
    { origin: "http://10.0.0.1.evil.example" },
  ];
  for (const hostile of hostiles) {
    const reply = await commit(hostile);
    assert.equal(reply.statusCode, 403, JSON.stringify(hostile));
    assert.equal(reply.json<{ code: string }>().code, "RTR7_ERR_HTTP_CROSS_SITE");
  }
  assert.equal(state.commits, 0);
  assert.equal((await commit({})).statusCode, 200, "a tool without Origin");
  assert.equal(
    (await commit({ origin: "http://10.0.0.1", "sec-fetch-site": "same-origin" })).statusCode,
    200,
  );
  assert.equal(state.commits, 2);
});

test("pages carry X-Frame-Options, X-Content-Type-Options and a Content-Security-Policy", async (t) => {
  const { app } = await guardedApp();
  t.after(() => app.close());
  const reply = await app.inject({
    method: "GET",
    url: "/",
    remoteAddress: "10.0.0.2",
    headers: { host: "router7" },
  });
  for (const [name, value] of Object.entries(securityHeaders)) assert.equal(reply.headers[name], value, name);
  const refused = await app.inject({
    method: "GET",
    url: "/",
    remoteAddress: "8.8.8.8",
    headers: { host: "router7" },
  });
  assert.equal(refused.headers["x-frame-options"], "DENY");
});

test("listen config: lan0 and loopback by default, the file's addresses, and safe defaults for a bad file", async (t) => {
  const perm = await scratchDir(t, "listen");
  assert.deepEqual(
    (await readListenConfig(perm)).addresses,
    ["0.0.0.0"],
    "no fixed lan0 address: all, with the source check",
  );
  await writeFile(
    path.join(perm, "interfaces.json"),
    JSON.stringify({
      interfaces: [
        { name: "uplink0", addr: "198.51.100.7/24" },
        { name: "lan0", addr: "10.0.0.1/24" },
      ],
    }),
  );
  assert.deepEqual(await readListenConfig(perm), {
    addresses: ["10.0.0.1", "127.0.0.1"],
    allowSources: [],
    names: [],
  });
  await mkdir(path.join(perm, "rtr7"));
  const file = path.join(perm, "rtr7", "listen.json");
  await writeFile(
    file,
    JSON.stringify({
      addresses: ["10.0.0.1"],
      allowSources: ["203.0.113.0/24"],
      names: ["Router.Example.lan"],
    }),
  );
  assert.deepEqual(await readListenConfig(perm), {
    addresses: ["10.0.0.1"],
    allowSources: ["203.0.113.0/24"],
    names: ["router.example.lan"],
  });
  for (const bad of [
    "{not json",
    JSON.stringify({ addresses: ["0.0.0.0/0"] }),
    JSON.stringify({ allowSources: ["everyone"] }),
    "[]",
  ]) {
    await writeFile(file, bad);
    const config = await readListenConfig(perm);
    assert.deepEqual(config.addresses, ["10.0.0.1", "127.0.0.1"], bad);
    assert.deepEqual(config.allowSources, [], bad);
    assert.match(config.problem ?? "", /listen\.json/, bad);
  }
});

test("connections: at most perAddress from one address; the refusals are one log line", async (t) => {
  const { log, lines } = recordingLog();
  const server = net.createServer(() => undefined);
  const open = capConnections(server, { max: 64, perAddress: 4, firstRequestMs: 1500 }, log);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const sockets: net.Socket[] = [];
  const closed: boolean[] = [];
  for (let index = 0; index < 10; index += 1) {
    const socket = net.connect({ port, host: "127.0.0.1" });
    socket.on("error", () => undefined);
    socket.on("close", () => (closed[index] = true));
    sockets.push(socket);
    await once(socket, "connect");
  }
  t.after(() => sockets.forEach((socket) => socket.destroy()));
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(open.get("127.0.0.1"), 4);
  assert.equal(closed.filter(Boolean).length, 6);
  assert.equal(lines.filter((line) => line.event === "connections-refused").length, 1);
  // Another address still gets in.
  const other = net.connect({ port, host: "127.0.0.1", localAddress: "127.0.0.9" });
  other.on("error", () => undefined);
  await once(other, "connect");
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(open.get("127.0.0.9"), 1);
  other.destroy();
  // None of them sent a request: after firstRequestMs they are all closed.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  assert.equal(closed.filter(Boolean).length, 10, "idle connections that never asked are kept open");
  assert.equal(open.size, 0);
});

test("wrong passwords: 200 guesses make a handful of log lines, and the guesser alone is refused for the window", () => {
  const { log, lines } = recordingLog();
  let now = 1_000_000;
  const limiter = new LoginLimiter(log, { maxFailures: 10, windowMs: 60_000 }, () => now);
  for (let guess = 0; guess < 200; guess += 1) {
    if (limiter.blockedFor("10.0.0.66") === 0) limiter.failed("10.0.0.66", "PUT /update/root");
    now += 10;
  }
  assert.ok(limiter.blockedFor("10.0.0.66") > 0);
  assert.equal(limiter.blockedFor("10.0.0.2"), 0);
  assert.ok(lines.length <= 3, `${lines.length} log lines`);
  now += 60_000;
  assert.equal(limiter.blockedFor("10.0.0.66"), 0);
  assert.ok(
    lines.some((line) => line.count === 9),
    "the window's failures are summed up in one line",
  );
});
