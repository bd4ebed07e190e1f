// The unit target (openUnit) against a scripted HTTP server on loopback,
// for what a real unit does not do on demand: features asked once, a wrong
// hash (RTR7_ERR_UPDATE_HASH), busy answers (retried, the body never sent
// to a refusing unit), a 409 that is not "busy", 5xx and HTML answers, the
// forms of testboot and reboot, the password only in the Authorization
// header (backupd's included) and never in an error even when a unit echoes
// it, health and backup downloads that fail in each way, and connections
// that are refused or never answer.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { randomBytes } from "node:crypto";
import { access, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { Readable } from "node:stream";
import { gunzipSync, gzipSync } from "node:zlib";
import { isRtr7Error, type ErrorCode } from "../../lib/errors.js";
import { run } from "../../lab/processes.js";
import { pino } from "pino";
import {
  nodeHttpTransport,
  openUnit,
  type OpenUnitOptions,
  type UnitTarget,
} from "../../updates/client/index.js";
import { scratchDir } from "../helpers/scratch.js";

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

type Handler = (request: IncomingMessage, response: ServerResponse, body: () => Promise<Buffer>) => void;

interface FakeUnit {
  port: number;
  /** Every request but GET /update/features. */
  seen: Seen[];
  /** How many times /update/features was asked. */
  featureAsks: number;
}

/**
 * A server whose answers the test scripts; every request it saw is in
 * `seen`. It answers GET /update/features itself with `features` (404 when
 * null).
 */
async function fakeUnit(
  t: TestContext,
  handler: Handler,
  features: string | null = "partuuid,",
): Promise<FakeUnit> {
  const unit: FakeUnit = { port: 0, seen: [], featureAsks: 0 };
  const server = http.createServer();
  const serve = (request: IncomingMessage, response: ServerResponse, expectsContinue: boolean): void => {
    if (request.url === "/update/features") {
      unit.featureAsks += 1;
      if (features === null) return void response.writeHead(404).end("404 page not found\n");
      return void response.end(features);
    }
    const record: Seen = {
      method: request.method ?? "",
      url: request.url ?? "",
      headers: request.headers,
      body: Buffer.alloc(0),
    };
    unit.seen.push(record);
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
  unit.port = (server.address() as AddressInfo).port;
  return unit;
}

function client(port: number, options: OpenUnitOptions = {}, password = "s3cret"): Promise<UnitTarget> {
  return openUnit(
    { host: "127.0.0.1", port, diagdPort: port, backupdPort: port },
    { password },
    { busyRetryIntervalMs: 20, ...options },
  );
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

test("features: asked once; crc32 with updatehash, sha256 without, nothing on 404", async (t) => {
  const listed = await fakeUnit(t, () => undefined, "partuuid,updatehash,");
  const unit = await client(listed.port);
  assert.equal(unit.featuresText, "partuuid,updatehash,");
  assert.equal(unit.updateHash, "crc32");
  assert.ok(unit.supports("partuuid") && unit.supports("updatehash"));
  await unit.health({ timeoutMs: 300 });
  assert.equal(listed.featureAsks, 1, "asked once, when opened");

  const partuuid = await client((await fakeUnit(t, () => undefined, "partuuid,\n")).port);
  assert.equal(partuuid.updateHash, "sha256");
  assert.ok(partuuid.supports("partuuid") && !partuuid.supports("updatehash"));
  assert.equal(partuuid.featuresText, "partuuid,");

  const none = await client((await fakeUnit(t, () => undefined, null)).port);
  assert.equal(none.featuresText, "");
  assert.equal(none.updateHash, "sha256");
  assert.ok(!none.supports("partuuid"));
});

/** A PUT handler that replies with the hash of what it received, or lies when told. */
function hashingUnit(lie: () => boolean): Handler {
  return (request, response, body) => {
    void body().then((received) => {
      const crc = request.headers["x-gokrazy-update-hash"] === "crc32";
      const reply = crc ? hashes(received).crc32 : hashes(received).sha256;
      response.end(lie() ? "0".repeat(reply.length) : reply);
    });
  };
}

test("streamTo: the body, Content-Length, Basic auth in its header only, the hash header; a wrong hash is refused", async (t) => {
  const { file, data } = await imageFile(t, 3 * 1024 * 1024 + 123);
  const want = hashes(data);
  let lie = false;
  const sha = await fakeUnit(
    t,
    hashingUnit(() => lie),
  );
  const crc = await fakeUnit(
    t,
    hashingUnit(() => lie),
    "partuuid,updatehash,",
  );
  const progress: number[] = [];
  const viaSha = await (
    await client(sha.port, { chunkBytes: 1024 * 1024 })
  ).streamTo("root", file, {
    onProgress: (sent, total) => {
      assert.equal(total, data.length);
      progress.push(sent);
    },
  });
  assert.equal(viaSha.hash, want.sha256);
  assert.equal(viaSha.algorithm, "sha256");
  assert.equal(viaSha.bytes, data.length);
  assert.equal(progress.at(-1), data.length);
  assert.ok(progress.length >= 4, "progress in steps");
  const viaCrc = await (await client(crc.port)).streamTo("boot", file);
  assert.equal(viaCrc.hash, want.crc32);
  assert.equal(viaCrc.algorithm, "crc32");

  // A readable of a known size is sent the same way.
  const fromStream = await (
    await client(sha.port)
  ).streamTo("mbr", {
    stream: Readable.from([data.subarray(0, 1000), data.subarray(1000)]),
    size: data.length,
  });
  assert.equal(fromStream.hash, want.sha256);

  const [first] = sha.seen;
  const [second] = crc.seen;
  assert.ok(first && second);
  assert.equal(first.method, "PUT");
  assert.equal(first.url, "/update/root");
  assert.equal(first.headers["content-length"], String(data.length));
  assert.equal(first.headers.expect, "100-continue");
  assert.equal(first.headers.authorization, `Basic ${Buffer.from("gokrazy:s3cret").toString("base64")}`);
  assert.equal(first.headers["x-gokrazy-update-hash"], undefined);
  assert.ok(first.body.equals(data));
  assert.equal(second.url, "/update/boot");
  assert.equal(second.headers["x-gokrazy-update-hash"], "crc32");
  assert.ok(!first.url.includes("s3cret"));
  assert.ok(sha.seen[1]?.body.equals(data), "the stream's bytes arrived");

  lie = true;
  await assert.rejects(
    (await client(sha.port)).streamTo("root", file),
    withCode("RTR7_ERR_UPDATE_HASH", new RegExp(want.sha256)),
  );
  await assert.rejects(
    (await client(sha.port)).streamTo("root", { stream: Readable.from([data.subarray(0, 10)]), size: 11 }),
    withCode("RTR7_ERR_FILE_MISSING", /changed while being sent/),
  );
});

test("gzip: a boot image goes gzip'd to a unit that lists gzip; the hash is the image's; root never, nor to other units", async (t) => {
  const dir = await scratchDir(t, "update-client-gzip");
  // Mostly empty, as a boot partition is.
  const data = Buffer.concat([randomBytes(256 * 1024), Buffer.alloc(8 * 1024 * 1024)]);
  const file = path.join(dir, "boot.img");
  await writeFile(file, data);
  const inflating: Handler = (request, response, body) => {
    void body().then((received) => {
      const image = request.headers["content-encoding"] === "gzip" ? gunzipSync(received) : received;
      const crc = request.headers["x-gokrazy-update-hash"] === "crc32";
      response.end(crc ? hashes(image).crc32 : hashes(image).sha256);
    });
  };
  const modern = await fakeUnit(t, inflating, "partuuid,gzip,");
  const unit = await client(modern.port);
  const pushed = await unit.streamTo("boot", file);
  assert.equal(pushed.hash, hashes(data).sha256);
  assert.equal(pushed.bytes, data.length);
  const sent = modern.seen.at(-1);
  assert.equal(sent?.headers["content-encoding"], "gzip");
  assert.equal(sent?.headers["content-length"], String(sent?.body.length));
  assert.ok(
    (sent?.body.length ?? 0) < data.length / 10,
    `sent ${sent?.body.length} bytes for ${data.length}`,
  );
  assert.ok(gunzipSync(sent?.body ?? Buffer.alloc(0)).equals(data));
  await unit.streamTo("root", file);
  assert.equal(
    modern.seen.at(-1)?.headers["content-encoding"],
    undefined,
    "root.img is squashfs: sent as it is",
  );
  const old = await fakeUnit(t, inflating, "partuuid,updatehash,");
  await (await client(old.port)).streamTo("boot", file);
  assert.equal(
    old.seen.at(-1)?.headers["content-encoding"],
    undefined,
    "a gokrazy unit gets the plain image",
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
        JSON.stringify({ code: "RTR7_ERR_UPDATE_BUSY", message: "PUT /update/mbr is in progress" }),
      );
    }
    void body().then((received) => response.end(hashes(received).sha256));
  });
  // The waits between attempts are on the injected clock: none in real time.
  let now = 0;
  const waits: number[] = [];
  const clock = {
    now: () => now,
    sleep: (ms: number) => {
      waits.push(ms);
      now += ms;
      return Promise.resolve();
    },
  };
  const unit = await client(port, { ...clock, busyRetryIntervalMs: 2000 });
  const result = await unit.streamTo("root", file);
  assert.equal(result.bytes, data.length);
  assert.equal(seen.length, 3);
  assert.deepEqual(
    seen.map((request) => request.body.length),
    [0, 0, data.length],
  );
  assert.deepEqual(waits, [2000, 2000]);

  busyAnswers = Infinity;
  await assert.rejects(
    unit.streamTo("root", file, { busyRetryMs: 7000 }),
    withCode("RTR7_ERR_UPDATE_BUSY", /in progress.*still busy after 4 attempts/),
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
  const unit = await client(port);
  await assert.rejects(unit.streamTo("root", file), withCode("RTR7_ERR_UPDATE_AUTH", /HTTP 401/));
  await assert.rejects(unit.commit(), withCode("RTR7_ERR_UPDATE_AUTH"));

  for (const key of ["code", "error"]) {
    answer = {
      status: 409,
      type: "application/json",
      body: JSON.stringify({
        [key]: "RTR7_ERR_SLOT_INVALID",
        message: "slot b holds no complete image",
        hint: "upload",
      }),
    };
    await assert.rejects(unit.testboot(), (error: unknown) => {
      assert.ok(isRtr7Error(error, "RTR7_ERR_SLOT_INVALID"), String(error));
      assert.match(error.message, /HTTP 409: slot b holds no complete image/);
      assert.equal(error.hint, "upload");
      return true;
    });
  }

  answer = { status: 500, type: "text/plain", body: "open /dev/sda3: input/output error\n" };
  await assert.rejects(
    unit.switch(),
    withCode("RTR7_ERR_UNIT_FAILED", /HTTP 500: open \/dev\/sda3: input\/output error$/),
  );
  answer = { status: 400, type: "text/plain", body: "expected a PUT request" };
  await assert.rejects(unit.streamTo("mbr", file), withCode("RTR7_ERR_UPDATE_REQUEST", /expected a PUT/));

  answer = { status: 200, type: "text/html", body: "<!DOCTYPE html><html>gokrazy</html>" };
  await assert.rejects(
    unit.streamTo("bootonly", file),
    withCode("RTR7_ERR_UPDATE_REQUEST", /does not implement/),
  );
});

/** Every message and hint of an error and its causes, joined. */
function errorText(error: unknown): string {
  const parts: string[] = [];
  for (let at: unknown = error; at instanceof Error; at = at.cause) {
    const hint = (at as { hint?: unknown }).hint;
    parts.push(at.message, typeof hint === "string" ? hint : "", at.stack ?? "");
    parts.push(JSON.stringify(at));
  }
  return parts.join("\n");
}

test("the password never reaches an error, its causes or a log, even from a unit that echoes it", async (t) => {
  const { file } = await imageFile(t, 1000);
  const password = `pw-${randomBytes(12).toString("hex")}`;
  const header = Buffer.from(`gokrazy:${password}`).toString("base64");
  // A unit (or a proxy in front of it) that quotes what it was sent in its refusals.
  const echo = (request: IncomingMessage): string =>
    `denied: authorization ${request.headers.authorization ?? ""} (password ${password})`;
  let status = 500;
  const { port } = await fakeUnit(t, (request, response) => {
    const json = request.headers.accept === "application/json" && request.url !== "/backup.tar.gz";
    response.writeHead(status, {
      "content-type": json ? "application/json" : "text/plain",
      connection: "close",
    });
    response.end(
      json
        ? JSON.stringify({ code: "RTR7_ERR_UPDATE_WRITE", message: echo(request), hint: echo(request) })
        : echo(request),
    );
  });
  const lines: string[] = [];
  const log = pino({ level: "trace" }, { write: (line: string) => lines.push(line) });
  const unit = await client(port, { log }, password);
  const dir = await scratchDir(t, "update-client");
  const failures: unknown[] = [];
  for (status of [500, 401, 403, 409]) {
    for (const call of [
      () => unit.streamTo("root", file, { busyRetryMs: 0 }),
      () => unit.commit(),
      () => unit.reboot(),
      () => unit.backup(path.join(dir, "backup.tar.gz")),
    ])
      await call().then(
        () => assert.fail("want a refusal"),
        (error: unknown) => failures.push(error),
      );
  }
  assert.equal(failures.length, 16);
  assert.ok(failures.every((error) => isRtr7Error(error)));
  assert.match(errorText(failures[0]), /\[redacted\]/, "the unit's text is quoted, the secret blotted out");
  for (const text of [...failures.map(errorText), lines.join("")]) {
    assert.ok(!text.includes(password), `the password leaked: ${text}`);
    assert.ok(!text.includes(header), `the Authorization header leaked: ${text}`);
  }
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
  const unit = await client(port);
  assert.equal(await unit.testboot({ deadlineMs: 90_500 }), "/update/testboot done");
  assert.equal(await unit.testboot(), "/update/testboot done");
  assert.equal(await unit.switch(), "/update/switch done");
  assert.equal(await unit.commit(), "slot b is committed");
  assert.equal(await unit.reboot({ kexec: false }), "/reboot done");
  assert.equal(await unit.reboot({ kexec: true }), "/reboot done");
  assert.equal(await unit.reboot(), "/reboot done");
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
    client(refusedPort),
    withCode("RTR7_ERR_UNIT_UNREACHABLE", /GET \/update\/features to 127\.0\.0\.1:\d+: connection refused/),
  );
  const unit = await client(silent.port, {
    requestTimeoutMs: 300,
    idleTimeoutMs: 500,
    transport: nodeHttpTransport({ continueTimeoutMs: 50 }),
  });
  await assert.rejects(
    unit.commit(),
    withCode(
      "RTR7_ERR_UNIT_UNREACHABLE",
      /POST \/update\/commit to 127\.0\.0\.1:\d+: no answer within 0\.3 s/,
    ),
  );
  assert.equal(await unit.health({ timeoutMs: 300 }), undefined);
  await assert.rejects(
    unit.streamTo("root", file),
    withCode("RTR7_ERR_UNIT_UNREACHABLE", /no progress for 0\.5 s after/),
  );
  const diagdRefused = await openUnit(
    { host: "127.0.0.1", port: silent.port, diagdPort: refusedPort },
    { password: "s3cret" },
  );
  assert.equal(await diagdRefused.health(), undefined);
});

test("health: the report parsed, no password sent; malformed JSON or a non-report is undefined", async (t) => {
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
  const unit = await client(port);
  assert.deepEqual(await unit.health(), {
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
  assert.equal(await unit.health(), undefined);
  body = JSON.stringify({ status: "ok" });
  assert.equal(await unit.health(), undefined);
});

test("backup: with the update API's credentials; saved only when whole; a cut archive or an error answer leaves nothing behind", async (t) => {
  const dir = await scratchDir(t, "update-client");
  await writeFile(path.join(dir, "keep.txt"), "kept\n");
  const archive = path.join(dir, "good.tar.gz");
  await run("tar", ["czf", archive, "-C", dir, "keep.txt"]);
  const good = await readFile(archive);
  let reply: (response: ServerResponse) => void = (response) => response.end(good);
  const { port, seen } = await fakeUnit(t, (_request, response) => reply(response));
  const unit = await client(port);
  const out = path.join(dir, "out");
  await mkdir(out);
  const destination = path.join(out, "backup.tar.gz");

  const progress: number[] = [];
  assert.deepEqual(await unit.backup(destination, { onProgress: (bytes) => progress.push(bytes) }), {
    bytes: good.length,
  });
  assert.ok((await readFile(destination)).equals(good));
  // The backup holds the unit's password: the owner's alone.
  assert.equal((await stat(destination)).mode & 0o777, 0o600);
  assert.equal(progress.at(-1), good.length);
  assert.equal(seen[0]?.url, "/backup.tar.gz");
  assert.equal(
    seen[0]?.headers.authorization,
    `Basic ${Buffer.from("gokrazy:s3cret").toString("base64")}`,
    "backupd gets the update API's credentials",
  );

  const other = path.join(out, "second.tar.gz");
  await run("tar", ["cf", path.join(dir, "plain.tar"), "-C", dir, "keep.txt"]);
  const tar = await readFile(path.join(dir, "plain.tar"));
  // The entry whole, but not the two zero blocks that end the tar.
  reply = (response) => response.end(gzipSync(tar.subarray(0, 1024)));
  await assert.rejects(unit.backup(other), withCode("RTR7_ERR_BACKUP_CORRUPT"));
  reply = (response) => {
    response.write(good.subarray(0, 20));
    setTimeout(() => response.socket?.destroy(), 50);
  };
  await assert.rejects(unit.backup(other), withCode("RTR7_ERR_BACKUP_DOWNLOAD", /cut after 20 B/));
  reply = (response) => response.writeHead(503).end("archiving failed: EIO");
  await assert.rejects(
    unit.backup(other),
    withCode("RTR7_ERR_BACKUP_DOWNLOAD", /HTTP 503: archiving failed: EIO/),
  );
  reply = (response) => response.writeHead(401).end("Unauthorized");
  await assert.rejects(unit.backup(other), withCode("RTR7_ERR_UPDATE_AUTH", /HTTP 401/));
  await assert.rejects(access(other));
  assert.deepEqual(await readdir(out), ["backup.tar.gz"], "no partial file left");
});
