// The updates directory: the XDG default, run directories named by their
// UTC time (-2, -3 when taken), events with their time and without secrets,
// logs flushed on close, run.json written atomically, runs listed oldest
// first (an unreadable record counts as failed), the last known good run,
// and keep-N pruning that never deletes it nor a protected run.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { isRtr7Error } from "../../lib/errors.js";
import {
  UpdateRun,
  defaultUpdatesDir,
  lastKnownGood,
  listRuns,
  pruneRuns,
  runImages,
  type RunRecord,
} from "../../updates/runs.js";
import { scratchDir } from "../helpers/scratch.js";

test("defaultUpdatesDir: an absolute XDG_DATA_HOME, else ~/.local/share", () => {
  assert.equal(defaultUpdatesDir({ XDG_DATA_HOME: "/data" }, "/home/u"), "/data/rtr7/updates");
  assert.equal(defaultUpdatesDir({ XDG_DATA_HOME: "data" }, "/home/u"), "/home/u/.local/share/rtr7/updates");
  assert.equal(defaultUpdatesDir({}, "/home/u"), "/home/u/.local/share/rtr7/updates");
});

test("a run: named by UTC time, unique, with events, logs and an atomic run.json", async (t) => {
  const updates = await scratchDir(t, "runs");
  const when = new Date("2024-05-01T12:30:00.123Z");
  const clock = () => new Date("2024-05-01T12:31:02.000Z");
  const first = await UpdateRun.create(updates, "lab1", when, clock);
  const second = await UpdateRun.create(updates, "lab1", when);
  const third = await UpdateRun.create(updates, "lab1", when);
  assert.equal(first.dir, path.join(updates, "lab1", "2024-05-01T12-30-00Z"));
  assert.equal(second.dir, path.join(updates, "lab1", "2024-05-01T12-30-00Z-2"));
  assert.equal(third.dir, path.join(updates, "lab1", "2024-05-01T12-30-00Z-3"));
  await Promise.all([second.close(), third.close()]);

  const initial = JSON.parse(await readFile(path.join(first.dir, "run.json"), "utf8")) as RunRecord;
  assert.deepEqual(initial, { hostname: "lab1", status: "running", startedAt: "2024-05-01T12:30:00.123Z" });

  first.event({ event: "start", version: "v1" });
  first.event({ event: "auth", password: "hunter2", Authorization: "Basic aHVudGVyMg==" });
  first.stdout.write("building\n");
  first.stderr.write("warning: something\n");
  await first.setRecord({ version: "v2" });
  await Promise.all([
    first.setRecord({ status: "failed", message: "first" }),
    first.setRecord({ message: "last" }),
  ]);
  await first.close();

  const events = (await readFile(path.join(first.dir, "events.jsonl"), "utf8"))
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.deepEqual(events, [
    { time: "2024-05-01T12:31:02.000Z", event: "start", version: "v1" },
    { time: "2024-05-01T12:31:02.000Z", event: "auth", password: "[redacted]", Authorization: "[redacted]" },
  ]);
  const everything = (
    await Promise.all((await readdir(first.dir)).map((name) => readFile(path.join(first.dir, name), "utf8")))
  ).join("\n");
  assert.ok(!everything.includes("hunter2") && !everything.includes("aHVudGVyMg"), "no secret was written");
  assert.equal(await readFile(path.join(first.dir, "stdout.log"), "utf8"), "building\n");
  assert.equal(await readFile(path.join(first.dir, "stderr.log"), "utf8"), "warning: something\n");
  const record = JSON.parse(await readFile(path.join(first.dir, "run.json"), "utf8")) as RunRecord;
  assert.deepEqual(record, {
    hostname: "lab1",
    status: "failed",
    startedAt: "2024-05-01T12:30:00.123Z",
    version: "v2",
    message: "last",
  });
  assert.deepEqual((await readdir(first.dir)).sort(), [
    "events.jsonl",
    "run.json",
    "stderr.log",
    "stdout.log",
  ]);

  await assert.rejects(UpdateRun.create(updates, "../evil"), (error: unknown) =>
    isRtr7Error(error, "RTR7_ERR_USAGE"),
  );
});

/** A finished run with the given status, with or without its images. */
async function makeRun(
  updates: string,
  name: string,
  status: RunRecord["status"] | "none",
  images = true,
): Promise<string> {
  const dir = path.join(updates, "lab1", name);
  await mkdir(dir, { recursive: true });
  if (status !== "none")
    await writeFile(
      path.join(dir, "run.json"),
      JSON.stringify({ hostname: "lab1", status, startedAt: "2024-01-01T00:00:00.000Z" }),
    );
  if (images) for (const image of runImages) await writeFile(path.join(dir, image), image);
  return dir;
}

test("listRuns is oldest first; lastKnownGood is the newest committed run with its images", async (t) => {
  const updates = await scratchDir(t, "runs");
  assert.deepEqual(await listRuns(updates, "lab1"), []);
  assert.equal(await lastKnownGood(updates, "lab1"), undefined);

  const a = await makeRun(updates, "2024-01-01T00-00-00Z", "committed");
  const b = await makeRun(updates, "2024-01-02T00-00-00Z", "committed");
  const b9 = await makeRun(updates, "2024-01-02T00-00-00Z-9", "failed");
  const b10 = await makeRun(updates, "2024-01-02T00-00-00Z-10", "committed", false);
  const broken = await makeRun(updates, "2024-01-03T00-00-00Z", "none");
  await writeFile(path.join(updates, "lab1", "notes.txt"), "not a run");
  await mkdir(path.join(updates, "lab1", "not-a-run"));

  const runs = await listRuns(updates, "lab1");
  assert.deepEqual(
    runs.map((run) => run.dir),
    [a, b, b9, b10, broken],
  );
  assert.deepEqual(
    runs.map((run) => run.record.status),
    ["committed", "committed", "failed", "committed", "failed"],
  );
  assert.equal(runs[4]?.record.startedAt, "2024-01-03T00:00:00Z");
  assert.equal((await lastKnownGood(updates, "lab1"))?.dir, b, "b10 lacks its images");
  await rm(path.join(b, "root.img"));
  assert.equal((await lastKnownGood(updates, "lab1"))?.dir, a);
});

test("pruneRuns keeps the newest N, the last known good and the protected runs", async (t) => {
  const updates = await scratchDir(t, "runs");
  const names = Array.from({ length: 7 }, (_, day) => `2024-01-0${day + 1}T00-00-00Z`);
  // Only the second run is committed: it is the last known good.
  const dirs: string[] = [];
  for (const [index, name] of names.entries())
    dirs.push(await makeRun(updates, name, index === 1 ? "committed" : "failed"));
  const [d0, d1, d2, d3, d4, d5, d6] = dirs as [string, string, string, string, string, string, string];

  const deleted = await pruneRuns(updates, "lab1", 3, [d0]);
  assert.deepEqual(deleted, [d2, d3]);
  assert.deepEqual(
    (await listRuns(updates, "lab1")).map((run) => run.dir),
    [d0, d1, d4, d5, d6],
  );
  assert.deepEqual(await pruneRuns(updates, "lab1", 3, [d0]), [], "nothing more to delete");

  const all = await pruneRuns(updates, "lab1", 0, [path.join(d6, ".")]);
  assert.deepEqual(all, [d0, d4, d5]);
  assert.deepEqual(
    (await listRuns(updates, "lab1")).map((run) => run.dir),
    [d1, d6],
  );
  await assert.rejects(pruneRuns(updates, "lab1", -1, []), (error: unknown) =>
    isRtr7Error(error, "RTR7_ERR_USAGE"),
  );
});

test("a run's directory and its host directory are 0700 and its files 0600, whatever the umask or an older run made", async (t) => {
  const updates = await scratchDir(t, "runs");
  await mkdir(path.join(updates, "lab1"), { mode: 0o755 });
  const previous = process.umask(0o000);
  let run: UpdateRun;
  try {
    run = await UpdateRun.create(updates, "lab1");
    run.event({ event: "start" });
    run.stdout.write("line\n");
    await run.setRecord({ version: "v2" });
    await run.close();
  } finally {
    process.umask(previous);
  }
  assert.equal((await stat(path.join(updates, "lab1"))).mode & 0o777, 0o700);
  assert.equal((await stat(run.dir)).mode & 0o777, 0o700);
  for (const name of await readdir(run.dir))
    assert.equal((await stat(path.join(run.dir, name))).mode & 0o777, 0o600, name);
});
