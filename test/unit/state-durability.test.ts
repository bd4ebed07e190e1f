// The unit's own state survives a cut at any moment (issue 12): slots.json,
// the trial record, next-boot.json, the update API's password and
// interfaces.json. Under strace, each writer is seen to fsync its temporary
// file before the rename (or link) that puts it in place and to fsync the
// directory after it, and the trial record's removal to fsync the directory
// after the unlink: what a power cut on ext4 with its journal needs. A
// writer killed (SIGKILL) at many moments leaves exactly the old content or
// the new, and its leftover temporary files never stop the next write.
// Finally /perm is made with a journal and mounted data=ordered: checked
// with a real mke2fs and busybox mount where the test runs as root.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, open, readdir, readFile, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { removeDurably } from "../../lib/atomic-file.js";
import { permMke2fsArguments, permMountOptions } from "../../lib/wire/perm-filesystem.js";
import { mountUnitPerm } from "../../router/perm-mount.js";
import { isRoot } from "../helpers/netns.js";
import { repoPath } from "../helpers/paths.js";
import { scratchDir } from "../helpers/scratch.js";
import { tracedWriters, writeAlternating, type LoopWriter } from "../helpers/state-writer-driver.js";

const driver = repoPath("dist/test/helpers/state-writer-driver.js");
const tracedCalls = [
  "openat",
  "write",
  "pwrite64",
  "fsync",
  "fdatasync",
  "rename",
  "renameat",
  "renameat2",
  "link",
  "linkat",
  "unlink",
  "unlinkat",
];

/** One system call as strace -f -y printed it, with the lines it started and ended on. */
interface Call {
  pid: string;
  name: string;
  args: string;
  result: string;
  start: number;
  end: number;
}

/** Parses strace -f -y output, joining calls that another thread's call interrupted (<unfinished ...>). */
function parseStrace(text: string): Call[] {
  const calls: Call[] = [];
  const pending = new Map<string, Omit<Call, "result" | "end">>();
  text.split("\n").forEach((line, index) => {
    const match = /^(\d+)\s+(.*)$/.exec(line);
    if (!match) return;
    const [, pid = "", rest = ""] = match;
    const resumed = /^<\.\.\. (\w+) resumed>(.*)\)\s+= (.*)$/.exec(rest);
    if (resumed) {
      const started = pending.get(`${pid} ${resumed[1]}`);
      if (!started) return;
      pending.delete(`${pid} ${resumed[1]}`);
      calls.push({
        ...started,
        args: started.args + (resumed[2] ?? ""),
        result: resumed[3] ?? "",
        end: index,
      });
      return;
    }
    const unfinished = /^(\w+)\((.*) <unfinished \.\.\.>$/.exec(rest);
    if (unfinished) {
      const name = unfinished[1] ?? "";
      pending.set(`${pid} ${name}`, { pid, name, args: unfinished[2] ?? "", start: index });
      return;
    }
    const whole = /^(\w+)\((.*)\)\s+= (.*)$/.exec(rest);
    if (whole) {
      calls.push({
        pid,
        name: whole[1] ?? "",
        args: whole[2] ?? "",
        result: whole[3] ?? "",
        start: index,
        end: index,
      });
    }
  });
  return calls.sort((a, b) => a.start - b.start);
}

/** The quoted path arguments of a call, in order (strace prints paths in full, escaped). */
function quotedPaths(call: Call): string[] {
  return [...call.args.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((match) => match[1] ?? "");
}

/** The path strace -y shows for a call's first argument, a descriptor: `21</dir/file>`. */
function descriptorPath(call: Call): string | undefined {
  return /^\d+<(.*?)>/.exec(call.args)?.[1];
}

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const succeeded = (call: Call): boolean => /^-?\d+/.test(call.result) && !call.result.startsWith("-1");
const isSync = (call: Call): boolean => call.name === "fsync" || call.name === "fdatasync";

/** The calls between the driver's "begin NAME" and "end NAME" lines on stdout. */
function window(calls: Call[], name: string): Call[] {
  const marker = (word: string): number => {
    const found = calls.find(
      (call) =>
        call.name === "write" && call.args.startsWith("1<") && call.args.includes(`"${word} ${name}\\n"`),
    );
    assert.ok(found, `the trace has the driver's "${word} ${name}" line`);
    return found.start;
  };
  const from = marker("begin");
  const to = marker("end");
  return calls.filter((call) => call.start > from && call.end < to);
}

function describe(calls: Call[]): string {
  return calls.map((call) => `${call.name}(${call.args}) = ${call.result}`).join("\n");
}

/** Asserts: temporary created exclusively, written, fsynced, then put in place, then the directory fsynced. */
function assertReplacedDurably(calls: Call[], target: string, how: "rename" | "link"): void {
  const directory = path.dirname(target);
  const placeNames = how === "rename" ? ["rename", "renameat", "renameat2"] : ["link", "linkat"];
  const placing = calls.find(
    (call) => placeNames.includes(call.name) && succeeded(call) && quotedPaths(call).at(-1) === target,
  );
  assert.ok(placing, `a ${how} onto ${target} in:\n${describe(calls)}`);
  const temporary = quotedPaths(placing)[0] ?? "";
  assert.equal(path.dirname(temporary), directory, "the temporary file is beside the target");
  assert.match(path.basename(temporary), new RegExp(`^\\.${escapeRegExp(path.basename(target))}\\.tmp-`));

  const created = calls.find((call) => call.name === "openat" && quotedPaths(call)[0] === temporary);
  assert.ok(created, `the temporary ${temporary} is opened`);
  assert.match(created.args, /O_CREAT/);
  assert.match(created.args, /O_EXCL/, "created exclusively, so a planted link is refused");
  const written = calls.filter(
    (call) => (call.name === "write" || call.name === "pwrite64") && descriptorPath(call) === temporary,
  );
  assert.ok(written.length > 0, "the content is written into the temporary file");
  const fileSync = calls.find(
    (call) => isSync(call) && descriptorPath(call) === temporary && succeeded(call),
  );
  assert.ok(fileSync, `the temporary file is fsynced in:\n${describe(calls)}`);
  assert.ok(
    written.every((call) => call.end < fileSync.start),
    "every write to it ends before its fsync starts",
  );
  assert.ok(fileSync.end < placing.start, `its fsync ends before the ${how} starts`);
  const directorySync = calls.find(
    (call) =>
      isSync(call) && descriptorPath(call) === directory && succeeded(call) && call.start > placing.end,
  );
  assert.ok(directorySync, `${directory} is fsynced after the ${how} in:\n${describe(calls)}`);
  const openedInPlace = calls.filter(
    (call) =>
      call.name === "openat" && quotedPaths(call)[0] === target && /O_WRONLY|O_RDWR|O_TRUNC/.test(call.args),
  );
  assert.deepEqual(openedInPlace, [], "the target itself is never opened for writing");
}

function assertRemovedDurably(calls: Call[], target: string): void {
  const removal = calls.find(
    (call) => (call.name === "unlink" || call.name === "unlinkat") && quotedPaths(call)[0] === target,
  );
  assert.ok(removal && succeeded(removal), `${target} is unlinked in:\n${describe(calls)}`);
  const directorySync = calls.find(
    (call) =>
      isSync(call) &&
      descriptorPath(call) === path.dirname(target) &&
      succeeded(call) &&
      call.start > removal.end,
  );
  assert.ok(directorySync, `its directory is fsynced after the unlink in:\n${describe(calls)}`);
}

test("each state writer fsyncs its temporary file before the rename or link, and the directory after", async (t) => {
  if (spawnSync("strace", ["-V"]).status !== 0) return t.skip("needs strace: run scripts/setup.sh");
  const dir = await scratchDir(t, "durability");
  const output = path.join(dir, "strace.txt");
  const units = path.join(dir, "unit");
  const traced = spawnSync(
    "strace",
    [
      "-f",
      "-y",
      "-s",
      "64",
      "-o",
      output,
      "-e",
      `trace=${tracedCalls.join(",")}`,
      process.execPath,
      driver,
      "trace",
      units,
    ],
    // libuv may hand file system calls to io_uring, which strace cannot see: keep them system calls.
    { encoding: "utf8", timeout: 60_000, env: { ...process.env, UV_USE_IO_URING: "0" } },
  );
  if (traced.status !== 0 && /ptrace|Operation not permitted/i.test(traced.stderr))
    return t.skip(`strace cannot trace here: ${traced.stderr.trim().split("\n")[0] ?? ""}`);
  assert.equal(traced.status, 0, `the driver ran under strace: ${traced.stderr}`);
  const calls = parseStrace(await readFile(output, "utf8"));
  for (const writer of tracedWriters) {
    const target = path.join(units, writer.file);
    const inWindow = window(calls, writer.name);
    await t.test(`${writer.name}: ${writer.file} by ${writer.how}`, () => {
      if (writer.how === "unlink") assertRemovedDurably(inWindow, target);
      else assertReplacedDurably(inWindow, target, writer.how);
    });
  }
  const password = calls.find(
    (call) => call.name === "openat" && /\.gokr-pw\.txt\.tmp-/.test(quotedPaths(call)[0] ?? ""),
  );
  assert.match(password?.args ?? "", /, 0600\)?$/, "the password's temporary file is made 0600, never wider");
});

/**
 * Starts a looping writer and kills it (SIGKILL) `delayMs` after it has
 * reported `after` writes: inside a later write, at a moment that varies
 * with the delay. Resolves with how many writes it reported.
 */
async function killDuringWrites(
  writer: LoopWriter,
  dir: string,
  after: number,
  delayMs: number,
): Promise<number> {
  const child = spawn(process.execPath, [driver, "loop", writer, dir], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on("close", (_code, signal) => resolve(signal)),
  );
  let reported = 0;
  for await (const line of createInterface({ input: child.stdout })) {
    const count = line === "ready" ? 0 : Number(/^wrote (\d+)$/.exec(line)?.[1] ?? NaN);
    if (Number.isNaN(count)) continue;
    reported = count;
    if (count >= after) {
      setTimeout(() => child.kill("SIGKILL"), delayMs);
      break;
    }
  }
  // Drain what it still prints, so its pipe never holds up the end.
  child.stdout.resume();
  assert.equal(await exited, "SIGKILL", `the writer ran until it was killed: ${stderr}`);
  return reported;
}

/**
 * Kills a writer `rounds` times; after each kill the file holds one of the
 * two contents, whole, and nothing but hidden temporary files is left
 * beside it. Resolves with how many kills left a temporary file behind.
 */
async function killRepeatedly(t: TestContext, writer: LoopWriter, rounds: number): Promise<number> {
  const dir = await scratchDir(t, `kill-${writer}`);
  const file =
    writer === "slot-state"
      ? path.join(dir, "perm", "rtr7", "slots.json")
      : path.join(dir, "run", "next-boot.json");
  await mkdir(path.join(dir, "run"), { recursive: true });
  const contents: string[] = [];
  for (const index of [0, 1] as const) {
    await writeAlternating(writer, dir, index);
    contents.push(await readFile(file, "utf8"));
  }
  const leftover = new RegExp(`^\\.${escapeRegExp(path.basename(file))}\\.tmp-\\d+-[0-9a-f]{16}$`);
  let temporaries = 0;
  let interrupted = 0;
  for (let round = 0; round < rounds; round++) {
    // Where the kill lands: in the first to fourth write, somewhere in its
    // read, temporary file, fsyncs or rename.
    const reported = await killDuringWrites(writer, dir, round % 4, Math.random() * 40);
    const text = await readFile(file, "utf8");
    assert.ok(
      contents.includes(text),
      `killed after ${reported} writes, ${file} holds one of the two contents, whole (got ${text.length} bytes)`,
    );
    const names = (await readdir(path.dirname(file))).filter((name) => name !== path.basename(file));
    for (const name of names) assert.match(name, leftover, "only a killed writer's hidden temporary is left");
    if (names.length > temporaries) interrupted++;
    temporaries = names.length;
  }
  // The next write goes through whatever the kills left behind.
  await writeAlternating(writer, dir, 0);
  assert.equal(await readFile(file, "utf8"), contents[0]);
  return interrupted;
}

test("a writer killed at any moment leaves the old content or the new, and the next write still works", async (t) => {
  // Six writers at once, each killed four times: 24 kills, spread over the
  // steps of a write by the varying delays.
  const writers: LoopWriter[] = [
    "slot-state",
    "slot-state",
    "slot-state",
    "next-boot",
    "next-boot",
    "next-boot",
  ];
  // Every writer finishes (or fails) before the scratch directories go.
  const outcomes = await Promise.allSettled(writers.map((writer) => killRepeatedly(t, writer, 4)));
  const failed = outcomes.find((outcome) => outcome.status === "rejected");
  if (failed) throw failed.reason;
  const interrupted = outcomes.reduce(
    (sum, outcome) => sum + (outcome.status === "fulfilled" ? outcome.value : 0),
    0,
  );
  t.diagnostic(`${writers.length * 4} kills; ${interrupted} of them inside a temporary file's life`);
});

test("removeDurably removes the file and syncs its directory; a missing file or directory is no error", async (t) => {
  const dir = await scratchDir(t, "remove");
  const file = path.join(dir, "trial.json");
  await writeFile(file, "{}\n");
  assert.equal(await removeDurably(file), true);
  assert.equal(existsSync(file), false);
  assert.equal(await removeDurably(file), false);
  assert.equal(await removeDurably(path.join(dir, "absent", "trial.json")), false);
});

test("/perm is mounted with data=ordered and barriers; one without a journal is mounted as before, with a warning", async () => {
  const mounts: string[][] = [];
  const said: string[] = [];
  await mountUnitPerm(
    "/dev/vda4",
    "/perm",
    (args) => (mounts.push(args), Promise.resolve()),
    (line) => said.push(line),
  );
  assert.deepEqual(mounts, [["-t", "ext4", "-o", "data=ordered,barrier=1", "/dev/vda4", "/perm"]]);
  assert.equal(said.length, 0, said.join("\n"));

  mounts.length = 0;
  const refuseOptions = (args: string[]): Promise<void> => {
    mounts.push(args);
    return args.includes("-o") ? Promise.reject(new Error("Invalid argument")) : Promise.resolve();
  };
  await mountUnitPerm("/dev/vda4", "/perm", refuseOptions, (line) => said.push(line));
  assert.deepEqual(mounts.at(-1), ["-t", "ext4", "/dev/vda4", "/perm"]);
  assert.match(said.join("\n"), /without -o data=ordered,barrier=1.*power cut/);
});

/** s_feature_compat's has_journal bit, from the superblock at byte 1024 of the partition. */
async function hasJournal(image: string): Promise<boolean> {
  const handle = await open(image, "r");
  try {
    const compat = Buffer.alloc(4);
    await handle.read(compat, 0, 4, 1024 + 0x5c);
    return (compat.readUInt32LE(0) & 0x4) !== 0;
  } finally {
    await handle.close();
  }
}

test("a /perm made as a recovery makes it has a journal, and busybox mounts it data=ordered", async (t) => {
  if (!isRoot()) return t.skip("needs root: mounts a loop device");
  for (const tool of ["mke2fs", "busybox"])
    if (spawnSync(tool, tool === "busybox" ? [] : ["-V"]).error)
      return t.skip(`needs ${tool}: run scripts/setup.sh`);
  if (!existsSync("/dev/loop-control")) return t.skip("needs loop devices (/dev/loop-control)");
  const dir = await scratchDir(t, "perm-mount");
  const mountPoint = path.join(dir, "perm");
  await mkdir(mountPoint);
  const run = (command: string, args: string[]): Promise<void> => {
    const result = spawnSync(command, args, { encoding: "utf8", timeout: 60_000 });
    if (result.status === 0) return Promise.resolve();
    return Promise.reject(new Error(`${command} ${args.join(" ")}: ${result.stderr.trim()}`));
  };
  // The super options, the last field of the mount's line in mountinfo.
  const mountOptions = (): string | undefined =>
    readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .find((line) => line.split(" ")[4] === mountPoint)
      ?.split(" ")
      .at(-1);
  t.after(() => {
    if (mountOptions() !== undefined) spawnSync("umount", [mountPoint]);
  });

  const journaled = path.join(dir, "perm.img");
  await writeFile(journaled, "");
  await truncate(journaled, 32 * 1024 * 1024);
  await run("mke2fs", permMke2fsArguments(journaled, "perm"));
  assert.equal(await hasJournal(journaled), true, "mke2fs made /perm with a journal");
  const said: string[] = [];
  await mountUnitPerm(
    journaled,
    mountPoint,
    (args) => run("busybox", ["mount", ...args]),
    (line) => said.push(line),
  );
  assert.equal(said.length, 0, said.join("\n"));
  assert.match(mountOptions() ?? "", /(^|,)data=ordered(,|$)/, `mounted with ${permMountOptions}`);
  await run("umount", [mountPoint]);

  const withoutJournal = path.join(dir, "nojournal.img");
  await writeFile(withoutJournal, "");
  await truncate(withoutJournal, 32 * 1024 * 1024);
  await run("mke2fs", ["-q", "-t", "ext4", "-O", "^has_journal", withoutJournal]);
  await mountUnitPerm(
    withoutJournal,
    mountPoint,
    (args) => run("busybox", ["mount", ...args]),
    (line) => said.push(line),
  );
  assert.notEqual(mountOptions(), undefined, "a /perm without a journal still mounts");
  assert.match(said.join("\n"), /power cut may lose or tear/);
  await run("umount", [mountPoint]);
});
