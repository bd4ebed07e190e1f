// backupd as the supervisor runs it (`main.js service backupd`, a process in
// a namespace of its own, on its loopback), fetched with curl and unpacked
// with GNU tar: the archive holds exactly the regular files and directories
// of /perm minus `nobackup` and `srv` directories (modes, owners, mtimes
// kept); a 256 MiB file streams through without the process growing by its
// size; a file that shrinks while a slow client downloads cuts the download
// so that curl and tar both report it; and the service serves again
// afterwards. Every download sends the update API's credentials (user
// gokrazy, the password in /perm/gokr-pw.txt); without them, or with wrong
// ones, backupd answers 401 and curl receives no byte of the archive. Also
// measures the throughput next to `tar czf` of the same tree (printed, not
// asserted). Needs root, curl and GNU tar.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  chmod,
  chown,
  mkdir,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  truncate,
  utimes,
  writeFile,
} from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { run } from "../../lab/processes.js";
import type { ServiceConfig } from "../../router/unit.js";
import { namespacesFor, requireRootAndTools, type Netns } from "../helpers/netns.js";
import { repoPath } from "../helpers/paths.js";
import { scratchDir } from "../helpers/scratch.js";

const url = "http://127.0.0.1:8077/backup.tar.gz";
/** The unit's password, as writeTree puts it in /perm/gokr-pw.txt. */
const password = "secret";
const credentials = ["-u", `gokrazy:${password}`];
const mebibyte = 1024 * 1024;

interface Exit {
  code: number;
  output: string;
}

/** Runs a command in the namespace; its exit code and output instead of a rejection. */
async function exitOf(ns: Netns, command: string, args: string[]): Promise<Exit> {
  try {
    const result = await ns.exec(command, args, { timeoutMs: 120_000 });
    return { code: 0, output: result.stdout + result.stderr };
  } catch (error) {
    const cause = (error as { cause?: { code?: unknown; stdout?: string; stderr?: string } }).cause;
    return { code: Number(cause?.code ?? -1), output: `${cause?.stdout ?? ""}${cause?.stderr ?? ""}` };
  }
}

async function peakRssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  if (!match?.[1]) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** Every entry under dir as "path type mode uid:gid mtime size", sorted (directories without size). */
async function listing(dir: string): Promise<string[]> {
  const { stdout } = await run("find", [dir, "-mindepth", "1", "-printf", "%P %y %m %U:%G %T@ %s\\n"]);
  return stdout
    .trim()
    .split("\n")
    .map((line) => line.replace(/ (\d+)\.\d+ /, " $1 ").replace(/^(\S+ d .*) \d+$/, "$1"))
    .sort();
}

async function writeTree(perm: string): Promise<void> {
  const file = async (name: string, content: string | Buffer, mode: number, mtime: number): Promise<void> => {
    const full = path.join(perm, name);
    await mkdir(path.dirname(full), { recursive: true });
    await writeFile(full, content);
    await chmod(full, mode);
    await utimes(full, mtime, mtime);
  };
  await file("gokr-pw.txt", "secret\n", 0o600, 1_600_000_000);
  await file("top.bin", randomBytes(3 * mebibyte + 17), 0o644, 1_500_000_000);
  await file("exec.sh", "#!/bin/sh\necho hi\n", 0o755, 1_500_000_100);
  await file("a/empty", "", 0o640, 1_400_000_000);
  await file("a/b/deep.txt", "deep\n".repeat(1000), 0o400, 1_300_000_000);
  await file("a/b/unreadable-by-others", "x", 0o000, 1_300_000_001);
  await file(`a/${"long-name-".repeat(12)}/${"and-longer-".repeat(10)}.txt`, "long\n", 0o644, 1_300_000_002);
  await file("a/owned", "owned by 1234:5678\n", 0o664, 1_300_000_003);
  await chown(path.join(perm, "a/owned"), 1234, 5678);
  await file("a/srv-is-a-file", "a file named like srv is kept\n", 0o644, 1_300_000_004);
  // Skipped: directories named nobackup or srv at any depth, a symlink, a FIFO.
  await file("nobackup/cache.bin", randomBytes(1000), 0o644, 1_300_000_005);
  await file("srv/www/index.html", "<html>", 0o644, 1_300_000_006);
  await file("a/nobackup/x", "x", 0o644, 1_300_000_007);
  await file("a/b/srv/y", "y", 0o644, 1_300_000_008);
  await symlink("../top.bin", path.join(perm, "a/link-to-top"));
  await run("mkfifo", [path.join(perm, "a/fifo")]);
  for (const [dir, mode, mtime] of [
    ["a/b", 0o700, 1_200_000_000],
    ["a", 0o750, 1_200_000_001],
  ] as const) {
    await chmod(path.join(perm, dir), mode);
    await utimes(path.join(perm, dir), mtime, mtime);
  }
  // Creating the long name's directory changed a's mtime; set it last.
  await utimes(path.join(perm, "a"), 1_200_000_001, 1_200_000_001);
}

/** What the archive should hold: the tree minus what backupd skips. */
async function expectedCopy(perm: string, expected: string): Promise<void> {
  await run("cp", ["-a", `${perm}/.`, expected]);
  for (const skipped of ["nobackup", "srv", "a/nobackup", "a/b/srv", "a/link-to-top", "a/fifo"])
    await rm(path.join(expected, skipped), { recursive: true, force: true });
  // Removing entries changed the mtimes of their directories; copy them back.
  for (const dir of [".", "a", "a/b"]) {
    const original = await stat(path.join(perm, dir));
    await utimes(path.join(expected, dir), original.atime, original.mtime);
  }
}

test(
  "backupd: /backup.tar.gz of /perm, streamed, and cut when a file changes",
  { timeout: 600_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["ip", "curl", "tar", "cp", "find", "diff", "mkfifo"]))) return;
    const work = await scratchDir(t, "backupd");
    const perm = path.join(work, "perm");
    await mkdir(perm);
    await writeTree(perm);
    const config: ServiceConfig = {
      mode: "process",
      hostname: "unit-backupd-test",
      version: "2026.11.21-test",
      model: "process",
      slot: "a",
      trial: false,
      address: "127.0.0.1",
      ports: { update: 8080, diagd: 7733, backupd: 8077 },
      paths: {
        boot: path.join(work, "boot.img"),
        roots: { a: path.join(work, "root-a.img"), b: path.join(work, "root-b.img") },
        mbr: path.join(work, "disk-mbr.img"),
        perm,
        etc: path.join(work, "etc"),
        run: path.join(work, "run"),
      },
      bootedAtMs: Date.now(),
    };
    const [unit] = await namespacesFor(t, "backupd");
    if (!unit) throw new Error("no namespace");
    const backupd = unit.start(process.execPath, [repoPath("dist/router/main.js"), "service", "backupd"], {
      env: { ...process.env, RTR7_SERVICE_CONFIG: JSON.stringify(config) },
    });
    await backupd.waitForLine(/backupd listening/, 15_000);

    await t.test("without the update API's credentials: 401 and not one byte of the archive", async () => {
      for (const [name, given] of [
        ["no credentials", []],
        ["a wrong password", ["-u", "gokrazy:wrong"]],
        ["a wrong user", ["-u", `root:${password}`]],
      ] as const) {
        const download = path.join(work, "refused.out");
        const { stdout } = await unit.exec("curl", [
          ...given,
          "-sS",
          "--max-time",
          "60",
          "-o",
          download,
          "-w",
          "%{http_code} %{content_type}",
          url,
        ]);
        assert.equal(stdout, "401 application/json", name);
        const body = await readFile(download);
        assert.ok(!body.includes(Buffer.from([0x1f, 0x8b])), `${name}: gzip bytes in the 401 reply`);
        assert.ok(!body.includes(Buffer.from(password)), `${name}: the password is in the 401 reply`);
        assert.equal((JSON.parse(body.toString()) as { code: string }).code, "RTR7_ERR_UPDATE_AUTH", name);
      }
    });

    await t.test("the archive unpacks to /perm minus nobackup, srv and non-regular files", async () => {
      const download = path.join(work, "backup.tar.gz");
      const headers = path.join(work, "headers.txt");
      await unit.exec("curl", [
        ...credentials,
        "-sS",
        "-f",
        "--max-time",
        "60",
        "-D",
        headers,
        "-o",
        download,
        url,
      ]);
      const today = new Date().toISOString().slice(0, 10);
      assert.match(
        await readFile(headers, "utf8"),
        new RegExp(
          `^content-disposition: attachment; filename="backup-unit-backupd-test-${today}\\.tar\\.gz"\\r?$`,
          "mi",
        ),
      );
      const extracted = path.join(work, "extracted");
      const expected = path.join(work, "expected");
      await mkdir(extracted);
      await mkdir(expected);
      await run("tar", ["xzf", download, "-C", extracted]);
      await expectedCopy(perm, expected);
      await run("diff", ["-r", expected, extracted]);
      // Types, modes, owners, mtimes (whole seconds, as tar keeps them) and file sizes.
      assert.deepEqual(await listing(extracted), await listing(expected));
      const { stdout: names } = await run("tar", ["tzf", download]);
      assert.deepEqual(
        names.trim().split("\n").slice(0, 4),
        ["a/", "a/b/", "a/b/deep.txt", "a/b/unreadable-by-others"],
        "entries are in sorted order, directories first named with a slash",
      );
      assert.match(backupd.output(), /skipping a\/link-to-top: it is a symlink/);
      assert.match(backupd.output(), /skipping a\/fifo: it is a FIFO/);
    });

    await t.test("a 256 MiB file streams through without the process holding it", async () => {
      const big = path.join(perm, "big.sparse");
      await writeFile(big, "");
      await truncate(big, 256 * mebibyte);
      const before = await peakRssBytes(backupd.pid);
      const { stdout } = await unit.exec("curl", [
        ...credentials,
        "-sS",
        "-f",
        "--max-time",
        "300",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download} %{time_total}",
        url,
      ]);
      const after = await peakRssBytes(backupd.pid);
      const [size, seconds] = stdout.split(" ").map(Number);
      t.diagnostic(
        `256 MiB sparse file: ${size} bytes of .tar.gz in ${seconds} s; backupd's peak RSS ${(before / mebibyte).toFixed(0)} MiB before, ${(after / mebibyte).toFixed(0)} MiB after`,
      );
      assert.ok(after < 128 * mebibyte, `peak RSS ${after} bytes: the file was held in memory`);
      await rm(big);
    });

    const changing = path.join(perm, "changing.bin");
    await t.test("a client that goes away stops the archive and releases the file", async () => {
      await writeFile(changing, randomBytes(64 * mebibyte));
      const descriptors = async (): Promise<number> => (await readdir(`/proc/${backupd.pid}/fd`)).length;
      const openBefore = await descriptors();
      const gone = await exitOf(unit, "curl", [
        ...credentials,
        "-sS",
        "--limit-rate",
        "1M",
        "--max-time",
        "2",
        "-o",
        "/dev/null",
        url,
      ]);
      assert.equal(gone.code, 28, `curl should have given up after 2 s: ${gone.output}`);
      await backupd.waitForLine(/backup download ended by the client before its end/, 10_000);
      let openAfter = await descriptors();
      for (let attempt = 0; attempt < 20 && openAfter > openBefore; attempt++) {
        await delay(100);
        openAfter = await descriptors();
      }
      assert.equal(openAfter, openBefore, "a file or socket stayed open after the client left");
    });

    await t.test("a file that shrinks during a slow download breaks the download", async () => {
      const download = path.join(work, "cut.tar.gz");
      const before = await peakRssBytes(backupd.pid);
      const client = unit.start("curl", [
        ...credentials,
        "-sS",
        "--limit-rate",
        "2M",
        "--max-time",
        "120",
        "-o",
        download,
        url,
      ]);
      t.after(() => client.stop());
      // Let it get into changing.bin (sorted after a/ and before exec.sh), then cut the file short.
      for (let waited = 0; waited < 30_000; waited += 100) {
        if (((await stat(download).catch(() => undefined))?.size ?? 0) > 6 * mebibyte) break;
        await delay(100);
      }
      await truncate(changing, mebibyte);
      const curlExit = await client.exited(120_000);
      const after = await peakRssBytes(backupd.pid);
      t.diagnostic(
        `curl exited ${curlExit}: ${client.output()}; backupd's peak RSS ${(before / mebibyte).toFixed(0)} → ${(after / mebibyte).toFixed(0)} MiB while a 64 MiB file waited for a 2 MiB/s client`,
      );
      assert.notEqual(curlExit, 0, "curl saw a complete download");
      const untar = await exitOf(unit, "tar", ["tzf", download]);
      assert.notEqual(untar.code, 0, `tar read the cut archive as complete:\n${untar.output}`);
      assert.match(
        backupd.output(),
        /backup failed, connection cut: changing\.bin: it shrank from 67108864 to \d+ bytes/,
      );
      await rm(changing);
    });

    await t.test("the service still serves afterwards", async () => {
      const download = path.join(work, "again.tar.gz");
      await unit.exec("curl", [...credentials, "-sS", "-f", "--max-time", "60", "-o", download, url]);
      const { stdout } = await run("tar", ["tzf", download]);
      assert.ok(stdout.split("\n").includes("gokr-pw.txt"));
    });

    await t.test("throughput next to tar czf (measured, not asserted)", async () => {
      const tree = path.join(perm, "bulk");
      await mkdir(tree);
      await writeFile(path.join(tree, "random.bin"), randomBytes(64 * mebibyte));
      const text = "interface lan0\n  address 10.0.0.1/24\n".repeat(100);
      for (let index = 0; index < 2000; index++)
        await writeFile(path.join(tree, `small-${index}.conf`), text);
      const bytes = 64 * mebibyte + 2000 * text.length;
      const timed = async (label: string, command: string[]): Promise<string> => {
        const started = performance.now();
        await unit.exec(command[0] ?? "", command.slice(1));
        const seconds = (performance.now() - started) / 1000;
        return `${label} ${seconds.toFixed(2)} s (${(bytes / mebibyte / seconds).toFixed(0)} MiB/s)`;
      };
      const results = [
        await timed("backupd (gzip -1) via curl:", [
          "curl",
          ...credentials,
          "-sS",
          "-f",
          "-o",
          "/dev/null",
          url,
        ]),
        // Through a pipe: GNU tar reads no file data at all when the archive is /dev/null.
        await timed("tar czf (gzip -6):", ["sh", "-c", `tar czf - -C ${perm} . | wc -c`]),
        await timed("tar | gzip -1:", ["sh", "-c", `tar cf - -C ${perm} . | gzip -1 | wc -c`]),
      ];
      t.diagnostic(`${(bytes / mebibyte).toFixed(0)} MiB in 2001 files: ${results.join("; ")}`);
      await rm(tree, { recursive: true });
    });

    await backupd.stop();
    assert.equal(await backupd.exited(1000), 0, `backupd should exit 0 on SIGTERM:\n${backupd.output()}`);
  },
);
