// The backup restore of recovery-init: a GNU tar backup comes back with its
// contents, modes, owners and mtimes; hostile or broken backups (traversal,
// links, devices, oversized headers, too many entries, truncated or non-gzip
// data) are rejected naming the entry, write nothing outside the target and
// leave the target as it was.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync } from "node:fs";
import { lstat, mkdir, readFile, readdir, readlink, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { PassThrough, Readable } from "node:stream";
import { constants as zlibConstants, gzipSync } from "node:zlib";
import { pack as tarPack, type Header } from "tar-stream";
import { isRtr7Error, type ErrorCode } from "../../lib/errors.js";
import { restoreBackup, type RestoreLimits } from "../../recovery-init/backup/restore.js";
import { DirectoriesBeneath, entryComponents } from "../../recovery-init/backup/safe-paths.js";
import { scratchDir } from "../helpers/scratch.js";

const isRoot = process.geteuid?.() === 0;

interface TarEntry {
  header: Partial<Header> & Pick<Header, "name">;
  data?: Buffer | string;
}

async function tarBytes(entries: TarEntry[]): Promise<Buffer> {
  const pack = tarPack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const { header, data } of entries) {
    await new Promise<void>((resolve, reject) =>
      pack.entry(header, data ?? "", (error) => (error ? reject(error) : resolve())),
    );
  }
  pack.finalize();
  await collected;
  return Buffer.concat(chunks);
}

async function tarGz(entries: TarEntry[]): Promise<Buffer> {
  return gzipSync(await tarBytes(entries));
}

/** A description of every path under `root`: type, mode, owner, size, mtime, content. */
async function snapshot(root: string, ignoreMtimeOf: string): Promise<Map<string, string>> {
  const result = new Map<string, string>();
  const visit = async (full: string): Promise<void> => {
    const info = await lstat(full);
    const mtime = full === ignoreMtimeOf ? "" : String(info.mtimeMs);
    let detail = "";
    if (info.isFile())
      detail = createHash("sha256")
        .update(await readFile(full))
        .digest("hex");
    if (info.isSymbolicLink()) detail = await readlink(full);
    result.set(full, `${info.mode.toString(8)} ${info.uid}:${info.gid} ${info.size} ${mtime} ${detail}`);
    if (info.isDirectory()) for (const name of await readdir(full)) await visit(path.join(full, name));
  };
  await visit(root);
  return result;
}

/** A work directory with a target holding earlier contents and a sentinel outside it. */
async function workspace(t: Parameters<typeof scratchDir>[0]) {
  const work = await scratchDir(t, "restore");
  const target = path.join(work, "target");
  const outside = path.join(work, "outside");
  await mkdir(path.join(target, "etc"), { recursive: true });
  await mkdir(path.join(target, "lost+found"));
  await writeFile(path.join(target, "etc", "config"), "the previous config\n");
  await mkdir(outside);
  await writeFile(path.join(outside, "sentinel"), "untouched\n");
  return { work, target, outside };
}

async function expectRejected(
  t: Parameters<typeof scratchDir>[0],
  build: (places: { work: string; outside: string }) => Buffer | Readable | Promise<Buffer | Readable>,
  want: { code: ErrorCode; message: RegExp; limits?: RestoreLimits },
): Promise<void> {
  const { work, target, outside } = await workspace(t);
  const backup = await build({ work, outside });
  const before = await snapshot(work, target);
  const source = Buffer.isBuffer(backup) ? Readable.from([backup]) : backup;
  await assert.rejects(restoreBackup({ source, target, limits: want.limits }), (error: unknown) => {
    assert.ok(isRtr7Error(error), `not an Rtr7Error: ${String(error)}`);
    assert.equal(error.code, want.code, error.message);
    assert.match(error.message, want.message);
    return true;
  });
  assert.deepEqual(await snapshot(work, target), before, "the work directory changed");
}

const file = (name: string, data: string | Buffer = "evil\n"): TarEntry => ({
  header: { name, type: "file", size: Buffer.byteLength(data), mode: 0o644 },
  data,
});

test("a GNU tar backup restores with contents, modes, owners and mtimes", async (t) => {
  if (spawnSync("tar", ["--version"]).status !== 0) return t.skip("needs GNU tar: run scripts/setup.sh");
  const { work, target } = await workspace(t);
  const source = path.join(work, "source");
  const longDirectory = path.join(source, "data", "d".repeat(90), "e".repeat(90));
  await mkdir(longDirectory, { recursive: true });
  await mkdir(path.join(source, "etc"), { mode: 0o700 });
  await mkdir(path.join(source, "empty-dir"));
  await writeFile(path.join(source, "etc", "secret"), "password\n", { mode: 0o600 });
  await writeFile(path.join(source, "etc", "tool"), "#!/bin/sh\n", { mode: 0o755 });
  await writeFile(path.join(source, "etc", "setuid"), "#!/bin/sh\n", { mode: 0o4755 });
  await writeFile(path.join(longDirectory, "big.bin"), randomBytes(300 * 1024));
  await writeFile(path.join(source, "empty"), "");
  await writeFile(path.join(source, "owned"), "by someone else\n");
  const shell = (script: string) => {
    const run = spawnSync("sh", ["-c", script], { cwd: source });
    assert.equal(run.status, 0, run.stderr.toString());
  };
  shell("chmod 4755 etc/setuid");
  if (isRoot) shell("chown 1234:5678 owned && chown 42:43 etc");
  shell("find . -mindepth 1 -exec touch -h -d '2021-03-04 05:06:07' {} +");
  shell("touch -d '2020-01-02 03:04:05' etc/secret etc");
  const backupFile = path.join(work, "backup.tar.gz");
  shell(`tar czf ${backupFile} .`);

  let progress = 0;
  const result = await restoreBackup({
    source: Readable.from([await readFile(backupFile)]),
    target,
    onProgress: (bytes) => (progress = bytes),
  });
  assert.deepEqual(result, { files: 6, directories: 5, bytes: 300 * 1024 + 20 + 9 + 16 });
  assert.equal(progress, result.bytes);

  const diff = spawnSync("diff", ["-r", "--exclude=lost+found", source, target]);
  assert.equal(diff.status, 0, diff.stdout.toString() + diff.stderr.toString());
  assert.deepEqual((await readdir(target)).sort(), [
    "data",
    "empty",
    "empty-dir",
    "etc",
    "lost+found",
    "owned",
  ]);
  const sourceTree = await snapshot(source, source);
  for (const [sourcePath, description] of sourceTree) {
    const restored = path.join(target, path.relative(source, sourcePath));
    if (sourcePath === source) continue;
    const info = await stat(restored);
    const want = await stat(sourcePath);
    assert.equal(info.mode & 0o7777, want.mode & 0o777, `${restored} mode (${description})`);
    assert.equal(info.mtimeMs, want.mtimeMs, `${restored} mtime`);
    if (isRoot) assert.deepEqual([info.uid, info.gid], [want.uid, want.gid], `${restored} owner`);
  }
  if (isRoot) assert.equal((await stat(path.join(target, "owned"))).uid, 1234);
  assert.equal((await stat(path.join(target, "etc", "setuid"))).mode & 0o7777, 0o755, "setuid dropped");
});

test("a symlink already in the target is replaced, never followed", async (t) => {
  const { work, target, outside } = await workspace(t);
  await symlink(outside, path.join(target, "link"));
  const before = await snapshot(outside, "");
  await restoreBackup({
    source: Readable.from([await tarGz([file("./link/evil")])]),
    target,
  });
  assert.deepEqual(await snapshot(outside, ""), before);
  assert.ok((await lstat(path.join(target, "link"))).isDirectory());
  assert.equal(await readFile(path.join(target, "link", "evil"), "utf8"), "evil\n");
  assert.equal(await readFile(path.join(target, "etc", "config"), "utf8"), "the previous config\n");
  assert.deepEqual((await readdir(work)).sort(), ["outside", "target"]);
});

test("hostile names are rejected, naming the entry", async (t) => {
  const cases: [string, string, RegExp][] = [
    ["../x", "../x", /"\.\.\/x" rejected: its name has a "\.\." component/],
    ["far up", "../../../escaped", /"\.\.\/\.\.\/\.\.\/escaped" rejected/],
    ["inner ..", "a/../../x", /"a\/\.\.\/\.\.\/x" rejected: its name has a "\.\." component/],
    ["reserved", ".rtr7-restore-abc/x", /reserved for the restore itself/],
    ["long name in a pax header", "d/".repeat(80) + "../".repeat(90) + "escaped", /"d\/d\/d\/.*" rejected/],
  ];
  for (const [label, name, message] of cases) {
    await t.test(label, (t) =>
      expectRejected(t, async () => tarGz([file("good.txt", "fine\n"), file(name)]), {
        code: "RTR7_ERR_BACKUP_REJECTED",
        message,
      }),
    );
  }
  await t.test("absolute, into another directory", (t) =>
    expectRejected(t, async ({ outside }) => tarGz([file(path.join(outside, "abs-evil"))]), {
      code: "RTR7_ERR_BACKUP_REJECTED",
      message: /outside\/abs-evil" rejected: its name is absolute/,
    }),
  );
  await t.test("a file where a file's parent should be", (t) =>
    expectRejected(t, async () => tarGz([file("a"), file("a/b")]), {
      code: "RTR7_ERR_BACKUP_REJECTED",
      message: /entry 2 "a\/b" rejected: its parent "a" is not a directory/,
    }),
  );
});

test("links, devices and FIFOs are rejected, naming the entry", async (t) => {
  const cases: [string, (outside: string) => TarEntry[], RegExp][] = [
    [
      "symlink, then a file through it",
      (outside) => [{ header: { name: "link", type: "symlink", linkname: outside } }, file("link/evil")],
      /entry 1 "link" rejected: it is a symlink \(to ".*outside"\)/,
    ],
    [
      "symlink alone",
      () => [{ header: { name: "./lonely", type: "symlink", linkname: "/etc/passwd" } }],
      /"\.\/lonely" rejected: it is a symlink/,
    ],
    [
      "hard link",
      () => [file("good.txt"), { header: { name: "hard", type: "link", linkname: "/etc/passwd" } }],
      /entry 2 "hard" rejected: it is a hard link \(to "\/etc\/passwd"\)/,
    ],
    [
      "character device",
      () => [{ header: { name: "null", type: "character-device", devmajor: 1, devminor: 3 } }],
      /"null" rejected: it is a character-device \(1,3\)/,
    ],
    [
      "block device",
      () => [{ header: { name: "sda", type: "block-device", devmajor: 8, devminor: 0 } }],
      /"sda" rejected: it is a block-device \(8,0\)/,
    ],
    ["FIFO", () => [{ header: { name: "pipe", type: "fifo" } }], /"pipe" rejected: it is a FIFO/],
  ];
  for (const [label, entries, message] of cases) {
    await t.test(label, (t) =>
      expectRejected(t, async ({ outside }) => tarGz(entries(outside)), {
        code: "RTR7_ERR_BACKUP_REJECTED",
        message,
      }),
    );
  }
});

test("limits: a 10 GiB header fails before any data, too many entries, too many bytes", async (t) => {
  await t.test("10 GiB header, then a stream that never ends", async (t) => {
    const pack = tarPack();
    pack.entry({ name: "huge", type: "file", size: 10 * 1024 ** 3 });
    const header = await new Promise<Buffer>((resolve) =>
      pack.once("data", (data) => resolve(data as Buffer)),
    );
    pack.destroy();
    assert.equal(header.length, 512);
    // The source never ends: the restore can only settle by refusing the
    // header itself. How fast it does is measured in npm run bench.
    const source = new PassThrough();
    await expectRejected(
      t,
      () => {
        source.write(gzipSync(header, { finishFlush: zlibConstants.Z_SYNC_FLUSH }));
        return source;
      },
      {
        code: "RTR7_ERR_BACKUP_REJECTED",
        message:
          /entry 1 "huge" rejected: it declares 10737418240 bytes, more than the 4294967296 bytes left/,
      },
    );
    assert.ok(source.destroyed, "the source was not destroyed");
  });
  await t.test("too many entries", (t) =>
    expectRejected(t, async () => tarGz(["a", "b", "c", "d", "e"].map((name) => file(name))), {
      code: "RTR7_ERR_BACKUP_REJECTED",
      message: /entry 4 "d" rejected: the backup has more than 3 entries/,
      limits: { maxEntries: 3 },
    }),
  );
  await t.test("too many bytes", (t) =>
    expectRejected(t, async () => tarGz([file("a", "x".repeat(600)), file("b", "y".repeat(600))]), {
      code: "RTR7_ERR_BACKUP_REJECTED",
      message: /entry 2 "b" rejected: it declares 600 bytes, more than the 400 bytes left/,
      limits: { maxBytes: 1000 },
    }),
  );
  await t.test("a gzip of zeros longer than the limits allow", (t) =>
    expectRejected(t, () => gzipSync(Buffer.alloc(4 * 1024 * 1024)), {
      code: "RTR7_ERR_BACKUP_REJECTED",
      message: /backup\.tar\.gz: the tar inside is longer than/,
      limits: { maxBytes: 1024, maxEntries: 10 },
    }),
  );
});

test("corrupt backups: truncated gzip, not gzip, a damaged tar", async (t) => {
  const good = await tarGz([file("a.bin", randomBytes(64 * 1024)), file("b.txt", "b\n")]);
  await t.test("truncated gzip", (t) =>
    expectRejected(t, () => good.subarray(0, good.length / 2), {
      code: "RTR7_ERR_BACKUP_CORRUPT",
      message: new RegExp(
        `^backup\\.tar\\.gz: unexpected end of data after ${Math.floor(good.length / 2)} bytes`,
      ),
    }),
  );
  await t.test("not gzip at all", (t) =>
    expectRejected(t, async () => tarBytes([file("a.txt")]), {
      code: "RTR7_ERR_BACKUP_CORRUPT",
      message: /^backup\.tar\.gz: not gzip data \(it starts with 0x612e/,
    }),
  );
  await t.test("a download that breaks off", (t) =>
    expectRejected(
      t,
      () =>
        new Readable({
          read() {
            this.push(good.subarray(0, 1000));
            this.destroy(new Error("socket hang up"));
          },
        }),
      {
        code: "RTR7_ERR_BACKUP_CORRUPT",
        message: /^backup\.tar\.gz: reading failed after \d+ bytes: socket hang up/,
      },
    ),
  );
  await t.test("empty", (t) =>
    expectRejected(t, () => Buffer.alloc(0), {
      code: "RTR7_ERR_BACKUP_CORRUPT",
      message: /^backup\.tar\.gz: unexpected end of data after 0 bytes/,
    }),
  );
  await t.test("gzip of something that is not a tar", (t) =>
    expectRejected(t, () => gzipSync(randomBytes(2048)), {
      code: "RTR7_ERR_BACKUP_CORRUPT",
      message: /^backup\.tar\.gz: corrupt tar after \d+ bytes of tar/,
    }),
  );
  await t.test("tar truncated inside a complete gzip", (t) =>
    expectRejected(
      t,
      async () => gzipSync((await tarBytes([file("a.bin", randomBytes(4096))])).subarray(0, 2000)),
      {
        code: "RTR7_ERR_BACKUP_CORRUPT",
        message: /^backup\.tar\.gz: corrupt tar after 2000 bytes of tar \(Unexpected end of data\)/,
      },
    ),
  );
});

test("entry names: GNU tar's ./ prefix and doubled slashes are accepted, the rest refused", () => {
  const refuse = (reason: string): never => {
    throw new Error(reason);
  };
  assert.deepEqual(entryComponents("./a/b", refuse), ["a", "b"]);
  assert.deepEqual(entryComponents("a//b/", refuse), ["a", "b"]);
  assert.deepEqual(entryComponents("./", refuse), []);
  assert.deepEqual(entryComponents("", refuse), []);
  assert.throws(() => entryComponents("/etc/passwd", refuse), /absolute/);
  assert.throws(() => entryComponents("a/..", refuse), /"\.\."/);
  assert.throws(() => entryComponents("a\0b", refuse), /NUL/);
  assert.throws(() => entryComponents("x".repeat(256), refuse), /longer than 255 bytes/);
});

test("DirectoriesBeneath never goes through a symlink inside its root", async (t) => {
  const work = await scratchDir(t, "beneath");
  const root = path.join(work, "root");
  const outside = path.join(work, "outside");
  await mkdir(root);
  await mkdir(outside);
  await symlink(outside, path.join(root, "link"));
  await symlink(path.join(outside, "file"), path.join(root, "dangling"));
  const refuse = (reason: string): never => {
    throw new Error(reason);
  };
  const beneath = new DirectoriesBeneath(root);
  assert.throws(() => beneath.file(["link", "evil"], refuse), /its parent "link" is a symlink/);
  assert.throws(() => beneath.directory(["link", "sub"], refuse), /its parent "link" is a symlink/);
  assert.throws(() => beneath.directory(["link"], refuse), /not a directory/);
  assert.throws(() => beneath.file(["dangling"], refuse), /not a regular file/);
  assert.deepEqual(await readdir(outside), []);
  closeSync(beneath.file(["new", "deep", "ok"], refuse));
  assert.ok((await lstat(path.join(root, "new", "deep", "ok"))).isFile());
});
