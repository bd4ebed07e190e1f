// UpdateClient against a scripted HTTP server on loopback, for what a real
// unit does not do on demand: a wrong hash (RTR7_ERR_UPDATE_HASH), busy
// answers (retried, the body never sent to a refusing unit), a 409 that is
// not "busy", 5xx and HTML answers, the forms of testboot and reboot, the
// password only in the Authorization header, health and backup downloads
// that fail in each way, and connections that are refused or never answer.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { randomBytes } from "node:crypto";
import { access, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { isRtr7Error, type ErrorCode } from "../../lib/errors.js";
import { run } from "../../lab/processes.js";
import { UpdateClient } from "../../updates/client/update-client.js";
import { scratchDir } from "../helpers/scratch.js";

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

type Handler = (request: IncomingMessage, response: ServerResponse, body: () => Promise<Buffer>) => void;

/** A server whose answers the test scripts; every request it saw is in `seen`. */
async function fakeUnit(t: TestContext, handler: Handler): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = http.createServer();
  const serve = (request: IncomingMessage, response: ServerResponse, expectsContinue: boolean): void => {
    const record: Seen = {
      method: request.method ?? "",
      url: request.url ?? "",
      headers: request.headers,
      body: Buffer.alloc(0),
    };
    seen.push(record);
    const body = async (): Promise<Buffer> => {
      if (expectsContinue) response.writeContinue();
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      record.body = Buffer.concat(chunks);
      return record.body;
    };
    handler(request, response, body);
  };
  server.on("checkContinue", (request: IncomingMessage, response: ServerResponse) =>
    serve(request, response, true),
  );
  server.on("request", (request: IncomingMessage, response: ServerResponse) =>
    serve(request, response, false),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as AddressInfo).port, seen };
}

function client(
  port: number,
  options: Partial<ConstructorParameters<typeof UpdateClient>[0]> = {},
): UpdateClient {
  return new UpdateClient({
    endpoint: { host: "127.0.0.1", port, diagdPort: port, backupdPort: port },
    password: "s3cret",
    busyRetryIntervalMs: 20,
    ...options,
  });
}

const withCode = (code: ErrorCode, pattern?: RegExp) => (error: unknown) => {
  assert.ok(isRtr7Error(error, code), `want ${code}, got ${String(error)}`);
  if (pattern) assert.match(error.message, pattern);
  return true;
};

async function imageFile(t: TestContext, bytes: number): Promise<{ file: string; data: Buffer }> {
  const dir = await scratchDir(t, "update-client");
  const data = randomBytes(bytes);
  const file = path.join(dir, "root.img");
  await writeFile(file, data);
  return { file, data };
}

const hashes = (data: Buffer) => ({
  sha256: createHash("sha256").update(data).digest("hex"),
  crc32: (crc32Reference(data) >>> 0).toString(16).padStart(8, "0"),
});
function crc32Reference(data: Buffer): number {
  // Bitwise CRC-32 (IEEE), independent of the client's zlib.crc32.
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit += 1) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return ~crc;
}

test("features: crc32 with updatehash, sha256 without, nothing on 404", async (t) => {
  let features: string | undefined = "partuuid,updatehash,";
  const { port } = await fakeUnit(t, (_request, response) => {
    if (features === undefined) return response.writeHead(404).end("404 page not found\n");
    response.end(features);
  });
  assert.deepEqual(await client(port).features(), {
    raw: "partuuid,updatehash,",
    hash: "crc32",
    partuuid: true,
  });
  features = "partuuid,\n";
  assert.deepEqual(await client(port).features(), { raw: "partuuid,", hash: "sha256", partuuid: true });
  features = undefined;
  assert.deepEqual(await client(port).features(), { raw: "", hash: "sha256", partuuid: false });
});

test("push: the body, Content-Length, Basic auth in its header only, the hash header; a wrong hash is refused", async (t) => {
  const { file, data } = await imageFile(t, 3 * 1024 * 1024 + 123);
  const want = hashes(data);
  let lie = false;
  const { port, seen } = await fakeUnit(t, (request, response, body) => {
    void body().then((received) => {
      const crc = request.headers["x-gokrazy-update-hash"] === "crc32";
      const reply = crc ? hashes(received).crc32 : createHash("sha256").update(received).digest("hex");
      response.end(lie ? "0".repeat(reply.length) : reply);
    });
  });
  const progress: number[] = [];
  const sha = await client(port, { chunkBytes: 1024 * 1024 }).push("root", file, {
    hash: "sha256",
    onProgress: (sent, total) => {
      assert.equal(total, data.length);
      progress.push(sent);
    },
  });
  assert.equal(sha.hash, want.sha256);
  assert.equal(sha.bytes, data.length);
  assert.equal(progress.at(-1), data.length);
  assert.ok(progress.length >= 4, "progress in steps");
  const crc = await client(port).push("boot", file, { hash: "crc32" });
  assert.equal(crc.hash, want.crc32);

  const [first, second] = seen;
  assert.ok(first && second);
  assert.equal(first.method, "PUT");
  assert.equal(first.url, "/update/root");
  assert.equal(first.headers["content-length"], String(data.length));
  assert.equal(first.headers.authorization, `Basic ${Buffer.from("gokrazy:s3cret").toString("base64")}`);
  assert.equal(first.headers["x-gokrazy-update-hash"], undefined);
  assert.ok(first.body.equals(data));
  assert.equal(second.url, "/update/boot");
  assert.equal(second.headers["x-gokrazy-update-hash"], "crc32");
  assert.ok(!first.url.includes("s3cret"));

  lie = true;
  await assert.rejects(
    client(port).push("root", file, { hash: "sha256" }),
    withCode("RTR7_ERR_UPDATE_HASH", new RegExp(want.sha256)),
  );
});

test("busy: asked again until the unit is free, no body sent to a refusing unit; then RTR7_ERR_UPDATE_BUSY", async (t) => {
  const { file, data } = await imageFile(t, 2 * 1024 * 1024);
  let busyAnswers = 2;
  const { port, seen } = await fakeUnit(t, (_request, response, body) => {
    if (busyAnswers > 0) {
      busyAnswers -= 1;
      response.writeHead(409, { "content-type": "application/json", connection: "close" });
      return response.end(
        JSON.stringify({ error: "RTR7_ERR_UPDATE_BUSY", message: "PUT /update/mbr is in progress" }),
      );
    }
    void body().then((received) => response.end(createHash("sha256").update(received).digest("hex")));
  });
  const result = await client(port).push("root", file, { hash: "sha256" });
  assert.equal(result.bytes, data.length);
  assert.equal(seen.length, 3);
  assert.deepEqual(
    seen.map((request) => request.body.length),
    [0, 0, data.length],
  );
  assert.equal(seen[0]?.headers.expect, "100-continue");

  busyAnswers = Infinity;
  await assert.rejects(
    client(port).push("root", file, { hash: "sha256", busyRetryMs: 100 }),
    withCode("RTR7_ERR_UPDATE_BUSY", /in progress.*still busy/),
  );
});

test("answers: 401, a 409 that is not busy, 5xx text, an HTML page, and the unit's own codes", async (t) => {
  const { file } = await imageFile(t, 1000);
  let answer: { status: number; type: string; body: string } = {
    status: 401,
    type: "text/plain",
    body: "Unauthorized",
  };
  const { port } = await fakeUnit(t, (_request, response) => {
    response.writeHead(answer.status, { "content-type": answer.type, connection: "close" });
    response.end(answer.body);
  });
  await assert.rejects(
    client(port).push("root", file, { hash: "sha256" }),
    withCode("RTR7_ERR_UPDATE_AUTH", /HTTP 401/),
  );
  await assert.rejects(client(port).commit(), withCode("RTR7_ERR_UPDATE_AUTH"));

  answer = {
    status: 409,
    type: "application/json",
    body: JSON.stringify({
      error: "RTR7_ERR_SLOT_INVALID",
      message: "slot b holds no complete image",
      hint: "upload",
    }),
  };
  await assert.rejects(client(port).testboot(), (error: unknown) => {
    assert.ok(isRtr7Error(error, "RTR7_ERR_SLOT_INVALID"), String(error));
    assert.match(error.message, /HTTP 409: slot b holds no complete image/);
    assert.equal(error.hint, "upload");
    return true;
  });

  answer = { status: 500, type: "text/plain", body: "open /dev/sda3: input/output error\n" };
  await assert.rejects(
    client(port).switchSlot(),
    withCode("RTR7_ERR_UNIT_FAILED", /HTTP 500: open \/dev\/sda3: input\/output error$/),
  );
  answer = { status: 400, type: "text/plain", body: "expected a PUT request" };
  await assert.rejects(
    client(port).push("mbr", file, { hash: "sha256" }),
    withCode("RTR7_ERR_UPDATE_REQUEST", /expected a PUT/),
  );

  answer = { status: 200, type: "text/html", body: "<!DOCTYPE html><html>gokrazy</html>" };
  await assert.rejects(
    client(port).push("bootonly", file, { hash: "sha256" }),
    withCode("RTR7_ERR_UPDATE_REQUEST", /does not implement/),
  );
});

test("testboot, switch, commit and reboot: their forms, and the unit's answer returned", async (t) => {
  const { port, seen } = await fakeUnit(t, (request, response, body) => {
    void body().then(() => {
      if (request.url === "/update/commit" && request.headers.accept === "application/json") {
        response.setHeader("content-type", "application/json");
        return response.end(JSON.stringify({ ok: true, slot: "b", message: "slot b is committed" }));
      }
      response.end(`${request.url} done\n`);
    });
  });
  const unit = client(port);
  assert.equal(await unit.testboot({ deadlineMs: 90_500 }), "/update/testboot done");
  assert.equal(await unit.testboot(), "/update/testboot done");
  assert.equal(await unit.switchSlot(), "/update/switch done");
  assert.equal(await unit.commit(), "slot b is committed");
  assert.equal(await unit.reboot({ kexec: false }), "/reboot done");
  assert.equal(await unit.reboot({ kexec: true }), "/reboot done");
  assert.deepEqual(
    seen.map((request) => [
      request.method,
      request.url,
      request.body.toString(),
      request.headers["content-type"],
    ]),
    [
      ["POST", "/update/testboot", "deadline=91s", "application/x-www-form-urlencoded"],
      ["POST", "/update/testboot", "", undefined],
      ["POST", "/update/switch", "", undefined],
      ["POST", "/update/commit", "", undefined],
      ["POST", "/reboot", "kexec=off", "application/x-www-form-urlencoded"],
      ["POST", "/reboot", "", undefined],
    ],
  );
  await assert.rejects(unit.testboot({ deadlineMs: 0 }), withCode("RTR7_ERR_USAGE"));
});

test("unreachable: refused, no answer in time, a stalled upload; health is undefined instead", async (t) => {
  const { file } = await imageFile(t, 64 * 1024 * 1024);
  // A server that takes the request and never answers, nor reads an upload.
  const silent = await fakeUnit(t, () => undefined);
  const refusedPort = await new Promise<number>((resolve) => {
    const probe = http.createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });

  await assert.rejects(
    client(refusedPort).features(),
    withCode("RTR7_ERR_UNIT_UNREACHABLE", /127\.0\.0\.1:\d+: connection refused/),
  );
  assert.equal(await client(refusedPort).health(), undefined);
  await assert.rejects(
    client(silent.port, { requestTimeoutMs: 300 }).commit(),
    withCode(
      "RTR7_ERR_UNIT_UNREACHABLE",
      /POST \/update\/commit to 127\.0\.0\.1:\d+: no answer within 0\.3 s/,
    ),
  );
  assert.equal(await client(silent.port).health(300), undefined);
  await assert.rejects(
    client(silent.port, { idleTimeoutMs: 500, continueTimeoutMs: 50 }).push("root", file, { hash: "sha256" }),
    withCode("RTR7_ERR_UNIT_UNREACHABLE", /no progress for 0\.5 s after/),
  );
});

test("health: the report parsed; malformed JSON or a non-report is undefined", async (t) => {
  let body = JSON.stringify({
    first_error: "",
    hostname: "lab1",
    version: "v3",
    slot: "b",
    trial: true,
    uptime_seconds: 5,
    checks: [],
  });
  const { port, seen } = await fakeUnit(t, (_request, response) => response.end(body));
  assert.deepEqual(await client(port).health(), {
    first_error: "",
    hostname: "lab1",
    version: "v3",
    slot: "b",
    trial: true,
    uptime_seconds: 5,
    checks: [],
  });
  assert.equal(seen[0]?.url, "/health.json");
  assert.equal(seen[0]?.headers.authorization, undefined, "diagd gets no password");
  body = "{not json";
  assert.equal(await client(port).health(), undefined);
  body = JSON.stringify({ status: "ok" });
  assert.equal(await client(port).health(), undefined);
});

test("downloadBackup: saved only when whole; a cut archive or an error answer leaves nothing behind", async (t) => {
  const dir = await scratchDir(t, "update-client");
  await writeFile(path.join(dir, "keep.txt"), "kept\n");
  const archive = path.join(dir, "good.tar.gz");
  await run("tar", ["czf", archive, "-C", dir, "keep.txt"]);
  const good = await readFile(archive);
  let reply: (response: ServerResponse) => void = (response) => response.end(good);
  const { port } = await fakeUnit(t, (_request, response) => reply(response));
  const out = path.join(dir, "out");
  await mkdir(out);
  const destination = path.join(out, "backup.tar.gz");

  const progress: number[] = [];
  assert.deepEqual(await client(port).downloadBackup(destination, (bytes) => progress.push(bytes)), {
    bytes: good.length,
  });
  assert.ok((await readFile(destination)).equals(good));
  assert.equal(progress.at(-1), good.length);

  const other = path.join(out, "second.tar.gz");
  await run("tar", ["cf", path.join(dir, "plain.tar"), "-C", dir, "keep.txt"]);
  const tar = await readFile(path.join(dir, "plain.tar"));
  // The entry whole, but not the two zero blocks that end the tar.
  reply = (response) => response.end(gzipSync(tar.subarray(0, 1024)));
  await assert.rejects(client(port).downloadBackup(other), withCode("RTR7_ERR_BACKUP_CORRUPT"));
  reply = (response) => {
    response.write(good.subarray(0, 20));
    setTimeout(() => response.socket?.destroy(), 50);
  };
  await assert.rejects(
    client(port).downloadBackup(other),
    withCode("RTR7_ERR_BACKUP_DOWNLOAD", /cut after 20 B/),
  );
  reply = (response) => response.writeHead(503).end("archiving failed: EIO");
  await assert.rejects(
    client(port).downloadBackup(other),
    withCode("RTR7_ERR_BACKUP_DOWNLOAD", /HTTP 503: archiving failed: EIO/),
  );
  await assert.rejects(access(other));
  assert.deepEqual(await readdir(out), ["backup.tar.gz"], "no partial file left");
});
