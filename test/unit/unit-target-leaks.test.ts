// The unit target leaves nothing open, as gokrazy's fake device checks: a
// scripted unit on loopback, the default node:http transport given a
// `connect` that counts the sockets it opens, and a wrapper that counts the
// answers whose body was neither read to its end nor closed. After a whole
// run (open, stream root/boot/mbr, testboot, switch, commit, reboot, health,
// backup) and after each kind of failure (401, a wrong hash, busy, a backup
// refused or cut, a silent diagd, a stalled upload), both counts must be
// zero. A first test shows the counts do see a leak when one is made.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import net, { type AddressInfo } from "node:net";
import path from "node:path";
import { isRtr7Error } from "../../lib/errors.js";
import { run } from "../../lab/processes.js";
import {
  nodeHttpTransport,
  openUnit,
  readText,
  type Transport,
  type UnitTarget,
} from "../../updates/client/index.js";
import { scratchDir } from "../helpers/scratch.js";

interface Script {
  /** How the unit answers PUT and POST: normally, 401, 409 busy, or with a wrong hash. */
  update: "ok" | "unauthorized" | "busy" | "lie" | "silent-body";
  backup: "ok" | "refused" | "cut";
  /** silent: no answer; streaming: the head and a first line, then nothing more. */
  health: "ok" | "silent" | "streaming";
}

async function scriptedUnit(t: TestContext, backup: Buffer): Promise<{ port: number; script: Script }> {
  const script: Script = { update: "ok", backup: "ok", health: "ok" };
  const server = http.createServer();
  const serve = (request: IncomingMessage, response: ServerResponse, expectsContinue: boolean): void => {
    const route = `${request.method ?? ""} ${request.url ?? ""}`;
    if (route === "GET /update/features") return void response.end("partuuid,updatehash,");
    if (route === "GET /health.json") {
      if (script.health === "silent") return;
      if (script.health === "streaming") return void response.write("{");
      return void response.end(
        JSON.stringify({ first_error: "", version: "v1", slot: "a", trial: false, uptime_seconds: 9 }),
      );
    }
    if (route === "GET /backup.tar.gz") {
      if (script.backup === "refused") return void response.writeHead(503).end("archiving failed");
      if (script.backup === "cut") {
        response.write(backup.subarray(0, 10));
        return void setImmediate(() => response.socket?.destroy());
      }
      return void response.end(backup);
    }
    if (script.update === "unauthorized") return void response.writeHead(401).end("Unauthorized");
    if (script.update === "busy")
      return void response.writeHead(409, { connection: "close" }).end("PUT /update/mbr is in progress");
    if (script.update === "silent-body") return; // takes the request, never reads nor answers
    if (expectsContinue) response.writeContinue();
    const hash = createHash("sha256");
    request.on("data", (chunk: Buffer) => hash.update(chunk));
    request.on("end", () => {
      if (request.method !== "PUT") return void response.end(`${request.url} done`);
      const hex = request.headers["x-gokrazy-update-hash"] === "crc32" ? "" : hash.digest("hex");
      response.end(script.update === "lie" ? "0".repeat(64) : hex);
    });
  };
  server.on("checkContinue", (request, response) => serve(request, response, true));
  server.on("request", (request, response) => serve(request, response, false));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as AddressInfo).port, script };
}

/** The default transport, its sockets and unfinished answers counted. */
function countingTransport(): {
  transport: Transport;
  open: () => Promise<{ sockets: number; answers: number }>;
} {
  const sockets = new Set<net.Socket>();
  const answers = new Set<object>();
  const base = nodeHttpTransport({
    continueTimeoutMs: 50,
    connect: (options) => {
      const socket = net.createConnection(options);
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      return socket;
    },
  });
  const transport: Transport = async (request) => {
    const response = await base(request);
    answers.add(response);
    response.body.on("close", () => answers.delete(response));
    return response;
  };
  /** What is still open once the event loop has had its turns to deliver the closes. */
  const open = async () => {
    for (let turn = 0; turn < 500 && sockets.size + answers.size > 0; turn += 1)
      await new Promise((resolve) => setImmediate(resolve));
    return { sockets: sockets.size, answers: answers.size };
  };
  return { transport, open };
}

async function fixtures(t: TestContext): Promise<{ dir: string; image: string; backup: Buffer }> {
  const dir = await scratchDir(t, "unit-target-leaks");
  const image = path.join(dir, "root.img");
  await writeFile(image, randomBytes(3 * 1024 * 1024));
  await writeFile(path.join(dir, "keep.txt"), "kept\n");
  await run("tar", ["czf", path.join(dir, "perm.tar.gz"), "-C", dir, "keep.txt"]);
  return { dir, image, backup: await readFile(path.join(dir, "perm.tar.gz")) };
}

test("the counts see a leak: an answer left unread, its socket while the answer goes on", async (t) => {
  const { backup } = await fixtures(t);
  const { port, script } = await scriptedUnit(t, backup);
  const { transport, open } = countingTransport();
  const probe = { host: "127.0.0.1", port, method: "GET", path: "/health.json", step: "probe" } as const;
  // A whole answer, unread: the unit closed the connection, the answer is still open.
  const unread = await transport(probe);
  assert.equal((await open()).answers, 1);
  unread.close();
  // An answer that goes on, unread: its socket stays open too.
  script.health = "streaming";
  const streaming = await transport(probe);
  assert.deepEqual(await open(), { sockets: 1, answers: 1 });
  streaming.close();
  assert.deepEqual(await open(), { sockets: 0, answers: 0 });
  script.health = "ok";
  assert.match(await readText(await transport(probe)), /first_error/);
  assert.deepEqual(await open(), { sockets: 0, answers: 0 });
});

test("nothing is left open after a whole run, nor after each kind of failure", async (t) => {
  const { dir, image, backup } = await fixtures(t);
  const { port, script } = await scriptedUnit(t, backup);
  const { transport, open } = countingTransport();
  const unit: UnitTarget = await openUnit(
    { host: "127.0.0.1", port, diagdPort: port, backupdPort: port },
    { password: "s3cret" },
    {
      transport,
      updateHash: "sha256",
      idleTimeoutMs: 300,
      busyRetryIntervalMs: 1,
      sleep: () => Promise.resolve(),
    },
  );
  const none = { sockets: 0, answers: 0 };
  assert.deepEqual(await open(), none, "after open");

  for (const target of ["root", "boot", "mbr"] as const) await unit.streamTo(target, image);
  assert.equal(await unit.testboot({ deadlineMs: 60_000 }), "/update/testboot done");
  await unit.switch();
  await unit.commit();
  await unit.reboot();
  assert.equal((await unit.health())?.version, "v1");
  assert.deepEqual(await unit.backup(path.join(dir, "backup.tar.gz")), { bytes: backup.length });
  assert.deepEqual(await open(), none, "after a whole run");

  const failures: [string, () => Promise<unknown>, (s: Script) => void, string][] = [
    [
      "401 on a push",
      () => unit.streamTo("root", image),
      (s) => (s.update = "unauthorized"),
      "RTR7_ERR_UPDATE_AUTH",
    ],
    ["401 on a commit", () => unit.commit(), (s) => (s.update = "unauthorized"), "RTR7_ERR_UPDATE_AUTH"],
    ["a wrong hash", () => unit.streamTo("boot", image), (s) => (s.update = "lie"), "RTR7_ERR_UPDATE_HASH"],
    [
      "busy",
      () => unit.streamTo("mbr", image, { busyRetryMs: 5 }),
      (s) => (s.update = "busy"),
      "RTR7_ERR_UPDATE_BUSY",
    ],
    [
      "a stalled upload",
      () => unit.streamTo("root", image),
      (s) => (s.update = "silent-body"),
      "RTR7_ERR_UNIT_UNREACHABLE",
    ],
    [
      "a refused backup",
      () => unit.backup(path.join(dir, "b2.tar.gz")),
      (s) => (s.backup = "refused"),
      "RTR7_ERR_BACKUP_DOWNLOAD",
    ],
    [
      "a cut backup",
      () => unit.backup(path.join(dir, "b3.tar.gz")),
      (s) => (s.backup = "cut"),
      "RTR7_ERR_BACKUP_DOWNLOAD",
    ],
  ];
  for (const [what, call, arrange, code] of failures) {
    Object.assign(script, { update: "ok", backup: "ok", health: "ok" });
    arrange(script);
    await assert.rejects(call(), (error: unknown) => isRtr7Error(error) && error.code === code, what);
    assert.deepEqual(await open(), none, `after ${what}`);
  }
  script.health = "silent";
  assert.equal(await unit.health({ timeoutMs: 100 }), undefined);
  assert.deepEqual(await open(), none, "after a silent diagd");
});
