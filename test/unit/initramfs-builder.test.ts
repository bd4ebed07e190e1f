// The recovery initramfs builder, for real on this machine's kernel with a
// stand-in recovery-init: GNU cpio lists the expected paths with the right
// modes; extracted, node runs in a chroot (its libraries are complete), the
// bundled stand-in runs through its #!/bin/node line, mke2fs and busybox
// run; a second build comes from the cache; another entry gives another
// hash; a failed build leaves nothing under a final name. Plus the file
// tree's and the bundler's own rules.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  realpath,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { isRtr7Error } from "../../lib/errors.js";
import {
  buildRecoveryInitramfs,
  defaultCacheDir,
  initramfsPaths,
  planRecoveryInitramfs,
  type RecoveryInitramfs,
} from "../../updates/image/initramfs/builder.js";
import { bundleRecoveryInit } from "../../updates/image/initramfs/bundle.js";
import { sharedLibraries } from "../../updates/image/initramfs/elf-deps.js";
import { InitramfsTree } from "../../updates/image/initramfs/tree.js";
import { hostKernel } from "../helpers/host-kernel.js";
import { scratchDir } from "../helpers/scratch.js";

const isRoot = process.getuid?.() === 0;
const have = (tool: string): boolean => spawnSync("sh", ["-c", `command -v "$1"`, "sh", tool]).status === 0;

/** A recovery-init stand-in: two modules (so bundling shows), top-level await. */
async function standInEntry(dir: string, greeting: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "greeting.mjs"), `export const greeting = ${JSON.stringify(greeting)};\n`);
  const entry = path.join(dir, "main.mjs");
  await writeFile(
    entry,
    '#!/usr/bin/env node\nimport { greeting } from "./greeting.mjs";\n' +
      "await Promise.resolve();\nconsole.log(greeting, process.versions.node);\n",
  );
  return entry;
}

interface Listed {
  mode: string;
  target?: string;
}

/** `cpio -tv` of a gzip'd archive: path → mode string (and link target). */
function listArchive(archive: string): Map<string, Listed> {
  const listing = spawnSync("sh", ["-c", 'gzip -dc "$1" | cpio -tv --quiet', "sh", archive], {
    encoding: "utf8",
    maxBuffer: 16 * 1024 * 1024,
  });
  assert.equal(listing.status, 0, listing.stderr);
  const entries = new Map<string, Listed>();
  for (const line of listing.stdout.split("\n").filter((row) => row !== "")) {
    const match = /^(\S+)\s+\d+\s+\S+\s+\S+\s+\d+\s+\w+\s+\d+\s+[\d:]+\s+(.+?)(?: -> (.+))?$/.exec(line);
    assert.ok(match, `unexpected cpio -tv line: ${line}`);
    const [, mode = "", name = "", target] = match;
    entries.set(name, target === undefined ? { mode } : { mode, target });
  }
  return entries;
}

function chroot(root: string, command: string[]): { status: number | null; stdout: string; stderr: string } {
  // A clean environment, as the kernel gives init.
  const result = spawnSync("chroot", [root, ...command], {
    encoding: "utf8",
    env: { PATH: "/bin:/sbin" },
    timeout: 60_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("the recovery initramfs for this machine's kernel", () => {
  const host = hostKernel();
  const skipReason =
    host.missing ??
    (!have("cpio") ? "needs GNU cpio: run scripts/setup.sh" : undefined) ??
    (!have("busybox") ? "needs busybox-static: run scripts/setup.sh" : undefined) ??
    (!have("mke2fs") ? "needs mke2fs (e2fsprogs): run scripts/setup.sh" : undefined);
  let work = "";
  let cacheDir = "";
  let entry = "";
  let cold: RecoveryInitramfs;
  let listing = new Map<string, Listed>();
  let extracted = "";
  let staleTemporary = "";
  let freshTemporary = "";

  before(async () => {
    if (skipReason !== undefined || host.missing !== undefined) return;
    work = await mkdtemp(path.join(tmpdir(), "rtr7-initramfs-"));
    cacheDir = path.join(work, "cache");
    entry = await standInEntry(path.join(work, "entry"), "hello from initramfs");
    // What a build killed mid-write leaves behind: an old one is cleared, a
    // recent one (maybe a build running right now) is left alone.
    await mkdir(cacheDir);
    staleTemporary = path.join(cacheDir, ".rtr7-recovery-x.cpio.gz.tmp-1-0badf00d");
    freshTemporary = path.join(cacheDir, ".rtr7-recovery-y.cpio.gz.tmp-2-0cafe0ff");
    await writeFile(staleTemporary, "half an archive");
    await writeFile(freshTemporary, "half an archive");
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(staleTemporary, twoHoursAgo, twoHoursAgo);

    cold = await buildRecoveryInitramfs({ kernel: host.kernel, entry, cacheDir });
    listing = listArchive(cold.path);
    extracted = path.join(work, "root");
    await mkdir(extracted);
    const unpack = spawnSync(
      "sh",
      ["-c", 'gzip -dc "$1" | (cd "$2" && cpio -idm --quiet)', "sh", cold.path, extracted],
      {
        encoding: "utf8",
      },
    );
    assert.equal(unpack.status, 0, unpack.stderr);
  });
  after(() => (work ? rm(work, { recursive: true, force: true }) : undefined));

  test("the archive holds init, node, busybox, mke2fs, libraries, modules and empty mount points", async (t) => {
    if (skipReason !== undefined || host.missing !== undefined) return t.skip(skipReason);
    assert.equal(cold.cached, false);
    assert.match(cold.inputHash, /^[0-9a-f]{64}$/);
    assert.ok(cold.path.startsWith(cacheDir + path.sep));
    t.diagnostic(`cold build: ${(cold.bytes / 1024 / 1024).toFixed(1)} MiB`);
    const expected = [
      "rtr7-recovery-init",
      "bin/node",
      "bin/busybox",
      "sbin/mke2fs",
      "etc/rtr7/modules",
      "etc/rtr7/build.json",
      ...["proc", "sys", "dev", "tmp", "perm", "mnt", "etc", "run"],
    ];
    for (const name of expected) assert.ok(listing.has(name), `${name} in the archive`);
    // Each library at the path ldd names and, when that is a symlink, at its target too.
    for (const binary of [process.execPath, "/sbin/mke2fs"]) {
      for (const library of await sharedLibraries(binary)) {
        assert.ok(listing.has(library.slice(1)), `${library} (of ${binary}) in the archive`);
        assert.ok(
          listing.has((await realpath(library)).slice(1)),
          `${await realpath(library)} in the archive`,
        );
      }
    }
    const modules = (await readFile(path.join(extracted, "etc/rtr7/modules"), "utf8")).trim().split("\n");
    const names = modules.map((file) => path.basename(file));
    for (const name of ["virtio_blk.ko", "e1000.ko", "ext4.ko", "crc32c_generic.ko"])
      assert.ok(names.includes(name), name);
    assert.ok(names.indexOf("jbd2.ko") < names.indexOf("ext4.ko"), "dependencies first");
    for (const file of modules) {
      assert.ok(file.startsWith(`/lib/modules/${host.release}/`), file);
      assert.ok(listing.has(file.slice(1)), `${file} in the archive`);
    }
    const buildInfo = JSON.parse(
      await readFile(path.join(extracted, "etc/rtr7/build.json"), "utf8"),
    ) as Record<string, unknown>;
    assert.equal(buildInfo.inputHash, cold.inputHash);
    assert.equal(buildInfo.kernelVersion, host.release);
    assert.equal(buildInfo.nodeVersion, process.versions.node);
  });

  test("entries have the right modes: 0755 for programs and the loader, 0644 for data", async (t) => {
    if (skipReason !== undefined) return t.skip(skipReason);
    for (const name of ["rtr7-recovery-init", "bin/node", "bin/busybox", "sbin/mke2fs"]) {
      assert.equal(listing.get(name)?.mode, "-rwxr-xr-x", name);
    }
    const loader = listing.get("lib64/ld-linux-x86-64.so.2");
    if (loader?.target !== undefined) {
      assert.equal(loader.mode, "lrwxrwxrwx");
      assert.equal(
        listing.get(loader.target.slice(1))?.mode,
        "-rwxr-xr-x",
        "the loader itself is executable",
      );
    }
    for (const name of ["etc/rtr7/modules", "etc/rtr7/build.json"])
      assert.equal(listing.get(name)?.mode, "-rw-r--r--");
    for (const [name, { mode }] of listing) {
      if (name.endsWith(".ko")) assert.equal(mode, "-rw-r--r--", name);
      if (["proc", "sys", "dev", "tmp", "perm", "mnt", "etc", "run", "lib", "bin"].includes(name)) {
        assert.equal(mode, "drwxr-xr-x", name);
      }
    }
    const init = await readFile(path.join(extracted, "rtr7-recovery-init"), "utf8");
    assert.ok(init.startsWith("#!/bin/node\n"), "the kernel runs it with /bin/node");
    assert.equal(init.match(/^#!/gm)?.length, 1, "the entry's own #! line is gone");
  });

  test("in a chroot of the extracted archive: node, the bundled init, mke2fs and busybox run", (t) => {
    if (skipReason !== undefined) return t.skip(skipReason);
    if (!isRoot) return t.skip("needs root: chroot");
    const sum = chroot(extracted, ["/bin/node", "-e", "console.log(1+1)"]);
    assert.equal(sum.status, 0, sum.stderr);
    assert.equal(sum.stdout, "2\n");
    const init = chroot(extracted, [initramfsPaths.init]);
    assert.equal(init.status, 0, init.stderr);
    assert.equal(init.stdout, `hello from initramfs ${process.versions.node}\n`);
    const mke2fs = chroot(extracted, ["/sbin/mke2fs", "-V"]);
    assert.equal(mke2fs.status, 0, mke2fs.stderr);
    assert.match(mke2fs.stderr, /^mke2fs \d/);
    const busybox = chroot(extracted, ["/bin/busybox", "echo", "busybox ok"]);
    assert.equal(busybox.stdout, "busybox ok\n");
  });

  test("a second build with the same inputs comes from the cache: the archive is not written again", async (t) => {
    if (skipReason !== undefined || host.missing !== undefined) return t.skip(skipReason);
    const before = await stat(cold.path);
    const again = await buildRecoveryInitramfs({ kernel: host.kernel, entry, cacheDir });
    assert.deepEqual(again, { ...cold, cached: true });
    const after = await stat(cold.path);
    assert.equal(after.ino, before.ino, "the cached archive was replaced");
    assert.equal(after.mtimeMs, before.mtimeMs, "the cached archive was rewritten");
  });

  test("the cache holds the archive and no half-written file; old leftovers are cleared", async (t) => {
    if (skipReason !== undefined) return t.skip(skipReason);
    const files = (await readdir(cacheDir)).sort();
    assert.deepEqual(files, [path.basename(freshTemporary), path.basename(cold.path)].sort());
  });

  test("another entry gives another input hash; the same one gives the same", async (t) => {
    if (skipReason !== undefined || host.missing !== undefined) return t.skip(skipReason);
    const same = await planRecoveryInitramfs({ kernel: host.kernel, entry, cacheDir });
    assert.equal(same.inputHash, cold.inputHash);
    assert.equal(same.path, cold.path);
    const other = await standInEntry(path.join(work, "other"), "hello from another initramfs");
    const changed = await planRecoveryInitramfs({ kernel: host.kernel, entry: other, cacheDir });
    assert.notEqual(changed.inputHash, cold.inputHash);
    assert.notEqual(changed.path, cold.path);
  });

  test("an entry that does not bundle fails the build and writes nothing", async (t) => {
    if (skipReason !== undefined || host.missing !== undefined) return t.skip(skipReason);
    const broken = path.join(work, "broken.mjs");
    await writeFile(broken, "export const = ;\n");
    const before = (await readdir(cacheDir)).sort();
    await assert.rejects(
      buildRecoveryInitramfs({ kernel: host.kernel, entry: broken, cacheDir }),
      (error) => isRtr7Error(error, "RTR7_ERR_INITRAMFS_BUILD") && error.message.includes("broken.mjs"),
    );
    await assert.rejects(
      buildRecoveryInitramfs({ kernel: host.kernel, entry: path.join(work, "absent.mjs"), cacheDir }),
      (error) => isRtr7Error(error, "RTR7_ERR_FILE_MISSING"),
    );
    assert.deepEqual((await readdir(cacheDir)).sort(), before);
  });
});

test("the cache directory follows XDG_CACHE_HOME, ignoring a relative one", () => {
  assert.equal(
    defaultCacheDir({ XDG_CACHE_HOME: "/var/cache/me" }, "/home/a"),
    "/var/cache/me/rtr7/initramfs",
  );
  assert.equal(defaultCacheDir({ XDG_CACHE_HOME: "cache" }, "/home/a"), "/home/a/.cache/rtr7/initramfs");
  assert.equal(defaultCacheDir({}, "/home/a"), "/home/a/.cache/rtr7/initramfs");
});

test("the file tree adds parent directories, sorts parents first and refuses clashes", () => {
  const tree = new InitramfsTree()
    .data("/etc/rtr7/modules", Buffer.from("x\n"))
    .symlink("/lib64/ld.so", "/usr/lib/ld.so")
    .directory("/proc")
    .data("/etc/rtr7/modules", Buffer.from("x\n"));
  assert.deepEqual(
    tree.entries().map((entry) => `${entry.kind} ${entry.path}`),
    [
      "directory etc",
      "directory etc/rtr7",
      "file etc/rtr7/modules",
      "directory lib64",
      "symlink lib64/ld.so",
      "directory proc",
    ],
  );
  assert.throws(() => tree.data("/etc/rtr7/modules", Buffer.from("other\n")), /both/);
  assert.throws(() => tree.data("/proc", Buffer.from("x")), /both a directory and a file/);
  assert.throws(
    () => new InitramfsTree().data("/a", Buffer.from("x")).data("/a/b", Buffer.from("y")).entries(),
    /a file/,
  );
});

test("a host file reached through a symlink is kept at both paths", async (t) => {
  const dir = await scratchDir(t, "tree");
  const real = path.join(dir, "libreal.so.1.2");
  const link = path.join(dir, "links", "libreal.so.1");
  await writeFile(real, "ELF");
  await mkdir(path.dirname(link));
  await symlink(real, link);
  const entries = (await new InitramfsTree().mirrorHostFile(link)).entries();
  const realPath = await realpath(real);
  assert.ok(entries.some((entry) => entry.kind === "file" && entry.path === realPath.slice(1)));
  assert.ok(
    entries.some(
      (entry) => entry.kind === "symlink" && entry.path === link.slice(1) && entry.target === realPath,
    ),
  );
});

test("the bundle starts with #!/bin/node even when the entry has its own #! line", async (t) => {
  const dir = await scratchDir(t, "bundle");
  const entry = await standInEntry(dir, "hi");
  for (const format of ["esm", "cjs"] as const) {
    if (format === "cjs") await writeFile(entry, '#!/usr/bin/env node\nconsole.log("no top-level await");\n');
    const text = (await bundleRecoveryInit(entry, format)).toString("utf8");
    assert.ok(text.startsWith("#!/bin/node\n"), format);
    assert.equal(text.match(/^#!/gm)?.length, 1, format);
    assert.ok(text.includes(format === "esm" ? '"hi"' : "no top-level await"), format);
  }
});
