// backupd's archive read back in-process with tar-stream: entries in sorted
// order, directories before their contents and named with a slash, skipped
// directories and file types, modes (also 000) and mtimes kept; a file that
// changes size while read fails the stream; the HTTP reply's headers
// through fastify's inject(); and the archive served only with the update
// API's credentials, since it holds the password file that lets anyone who
// has it push an image to the unit (defect 1 of issue 10).
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, symlink, truncate, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { pino } from "pino";
import { extract as tarExtract } from "tar-stream";
import { errorCatalogue } from "../../lib/errors.js";
import { silentLogger } from "../../lib/log.js";
import { createArchive } from "../../router/backupd/archive.js";
import { backupFileName, buildBackupdApp } from "../../router/backupd/server.js";
import type { ServiceConfig } from "../../router/unit.js";
import { scratchDir } from "../helpers/scratch.js";

interface Entry {
  name: string;
  type: string;
  mode: number;
  mtime: number;
  data: string;
}

async function readArchive(stream: Readable): Promise<Entry[]> {
  const entries: Entry[] = [];
  const extract = tarExtract();
  stream.pipe(createGunzip()).pipe(extract);
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    const { name, type, mode, mtime } = entry.header;
    entries.push({ name, type, mode, mtime: mtime.getTime() / 1000, data: Buffer.concat(chunks).toString() });
  }
  return entries;
}

test("the archive: sorted, skips nobackup/srv directories and non-regular files, keeps modes and mtimes", async (t) => {
  const root = await scratchDir(t, "backupd-unit");
  await mkdir(path.join(root, "b/srv"), { recursive: true });
  await mkdir(path.join(root, "nobackup"));
  await mkdir(path.join(root, "a"));
  await writeFile(path.join(root, "b/srv/skipped"), "no");
  await writeFile(path.join(root, "nobackup/skipped"), "no");
  await writeFile(path.join(root, "b/file"), "content");
  await writeFile(path.join(root, "srv"), "a file named srv is kept");
  await writeFile(path.join(root, "a/locked"), "");
  await chmod(path.join(root, "a/locked"), 0o000);
  await utimes(path.join(root, "b/file"), 1_000_000_000, 1_000_000_000);
  await symlink("b/file", path.join(root, "link"));
  await chmod(path.join(root, "b"), 0o710);

  const archive = createArchive({ root, log: silentLogger() });
  const [entries, stats] = await Promise.all([readArchive(archive.stream), archive.done]);
  assert.deepEqual(
    entries.map((entry) => `${entry.name} ${entry.type} ${entry.mode.toString(8)}`),
    ["a/ directory 755", "a/locked file 0", "b/ directory 710", "b/file file 644", "srv file 644"],
  );
  assert.equal(entries.find((entry) => entry.name === "b/file")?.data, "content");
  assert.equal(entries.find((entry) => entry.name === "b/file")?.mtime, 1_000_000_000);
  assert.deepEqual(stats, { files: 3, directories: 2, skipped: 1, bytes: 7 + 24 });
});

test("the archive fails, not ends, when a file shrinks while it is read", async (t) => {
  const root = await scratchDir(t, "backupd-unit");
  const file = path.join(root, "shrinking");
  // Incompressible, so that gzip's buffers fill up and the reading waits for
  // a reader, which only starts once the file was cut.
  await writeFile(file, randomBytes(1024 * 1024));
  const archive = createArchive({ root, log: silentLogger(), chunkBytes: 4096 });
  await new Promise((resolve) => setTimeout(resolve, 50));
  await truncate(file, 10_000);
  const drained = (async () => {
    for await (const _chunk of archive.stream) {
      // reading only
    }
  })();
  await assert.rejects(archive.done, /shrinking: it shrank from 1048576 to \d+ bytes while being read/);
  await assert.rejects(drained, /it shrank/);
});

const password = "backupd-unit-test-secret";
const authorization = `Basic ${Buffer.from(`gokrazy:${password}`).toString("base64")}`;

test("GET /backup.tar.gz names the file after the hostname and date", async (t) => {
  const dir = await scratchDir(t, "backupd-unit");
  await mkdir(path.join(dir, "perm"));
  await writeFile(path.join(dir, "perm/file"), "x");
  const config = {
    hostname: "router 7",
    paths: { perm: path.join(dir, "perm") },
  } as unknown as ServiceConfig;
  const app = buildBackupdApp({
    config,
    log: silentLogger(),
    password,
    now: () => new Date("2026-03-04T05:06:07Z"),
  });
  t.after(() => app.close());
  const response = await app.inject({ url: "/backup.tar.gz", headers: { authorization } });
  assert.equal(response.statusCode, 200);
  assert.equal(response.headers["content-type"], "application/gzip");
  assert.equal(
    response.headers["content-disposition"],
    'attachment; filename="backup-router_7-2026-03-04.tar.gz"',
  );
  const entries = await readArchive(Readable.from([response.rawPayload]));
  assert.deepEqual(
    entries.map((entry) => entry.name),
    ["file"],
  );
  assert.equal(backupFileName("", new Date(0)), "backup-unit-1970-01-01.tar.gz");
});

test("without the update API's credentials backupd answers 401 and sends no byte of the archive", async (t) => {
  const dir = await scratchDir(t, "backupd-unit");
  const perm = path.join(dir, "perm");
  await mkdir(perm);
  await writeFile(path.join(perm, "gokr-pw.txt"), `${password}\n`);
  await writeFile(path.join(perm, "interfaces.json"), "{}");
  const config = { hostname: "unit", paths: { perm } } as unknown as ServiceConfig;
  const lines: string[] = [];
  const log = pino({ level: "debug" }, { write: (line: string) => void lines.push(line) });
  const app = buildBackupdApp({ config, log, password });
  t.after(() => app.close());
  const basic = (credentials: string): string => `Basic ${Buffer.from(credentials).toString("base64")}`;
  for (const [name, headers] of [
    ["no credentials", {}],
    ["a wrong password", { authorization: basic("gokrazy:wrong") }],
    ["a wrong user", { authorization: basic(`root:${password}`) }],
    ["a bearer token", { authorization: `Bearer ${password}` }],
  ] as const) {
    const response = await app.inject({ url: "/backup.tar.gz", headers });
    assert.equal(response.statusCode, 401, name);
    assert.equal(response.headers["www-authenticate"], 'Basic realm="gokrazy"', name);
    assert.equal(response.headers["content-type"], "application/json", name);
    assert.equal(response.headers["content-disposition"], undefined, name);
    const body = response.json<{ code: string; message: string; hint: string }>();
    assert.equal(body.code, "RTR7_ERR_UPDATE_AUTH", name);
    assert.equal(body.hint, errorCatalogue.RTR7_ERR_UPDATE_AUTH.hint, name);
    assert.match(body.message, /^GET \/backup\.tar\.gz: /, name);
    assert.ok(!response.rawPayload.includes(Buffer.from([0x1f, 0x8b])), `${name}: gzip bytes in the reply`);
    assert.ok(!response.body.includes(password), `${name}: the password is in the reply`);
  }
  // Wrong passwords are summed up per address (router/http-guard/login-limiter.ts):
  // the first is one line, the rest wait for the window's summary.
  assert.equal(
    lines.filter((line) => line.includes('"event":"login-failed"')).length,
    1,
    "the refusals are logged once",
  );
  assert.ok(
    !lines.some((line) => line.includes("backup-start")),
    "no archive was begun for a refused request",
  );
  assert.ok(!lines.some((line) => line.includes(password)), "the password reached the log");

  const allowed = await app.inject({ url: "/backup.tar.gz", headers: { authorization } });
  assert.equal(allowed.statusCode, 200);
  const entries = await readArchive(Readable.from([allowed.rawPayload]));
  assert.deepEqual(
    entries.map((entry) => entry.name),
    ["gokr-pw.txt", "interfaces.json"],
    "the backup still holds the password file, so a recovery restores the unit's identity",
  );
  assert.equal(entries[0]?.data, `${password}\n`);
});

test("backupd answers an unknown path in rtr7's error shape (after the credentials)", async (t) => {
  const dir = await scratchDir(t, "backupd-unit");
  const config = { hostname: "unit", paths: { perm: dir } } as unknown as ServiceConfig;
  const app = buildBackupdApp({ config, log: silentLogger(), password });
  t.after(() => app.close());
  const missing = await app.inject({ url: "/perm/gokr-pw.txt", headers: { authorization } });
  assert.equal(missing.statusCode, 404);
  assert.equal(missing.headers["content-type"], "application/json");
  const body = missing.json<{ code: string; message: string; hint: string }>();
  assert.deepEqual(Object.keys(body).sort(), ["code", "hint", "message"]);
  assert.equal(body.code, "RTR7_ERR_HTTP_NOT_FOUND");
  assert.equal((await app.inject({ url: "/perm/gokr-pw.txt" })).statusCode, 401);
});
