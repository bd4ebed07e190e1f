// safeUpdate() as steps. First against a scripted unit on loopback (the
// real unit target over HTTP): a unit that is unhealthy, on trial or silent
// before the update is left untouched: no run directory, no request but
// the features and the health probe. Then against a fake unit target on a
// fake clock, so every wait (the unit going down, coming back healthy, a
// trial falling back by itself, a unit that stays silent) resolves at once:
// the steps in order with their timings on that clock, the rollback by the
// trial's own fallback, and the last resort, where the injected recover()
// is given the last good run's images and the backup this run took.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { access, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { isRtr7Error } from "../../lib/errors.js";
import { silentLogger } from "../../lib/log.js";
import { haveTool, run } from "../../lab/processes.js";
import type { HealthReport } from "../../lib/wire/health.js";
import { openUnit, type UnitTarget } from "../../updates/client/index.js";
import {
  safeUpdate,
  safeUpdateSteps,
  type RecoveryRequest,
  type SafeUpdateOptions,
} from "../../updates/safe-update.js";
import { scratchDir } from "../helpers/scratch.js";

interface UnitScript {
  /** The report to answer, given the routes seen so far; "silent" drops the connection. */
  health: (seen: string[]) => Record<string, unknown> | "silent";
  backup: Buffer;
}

/** One server for the update API, diagd and backupd; records every request. */
async function scriptedUnit(t: TestContext, script: UnitScript): Promise<{ port: number; seen: string[] }> {
  const seen: string[] = [];
  const server = http.createServer((request: IncomingMessage, response: ServerResponse) => {
    const route = `${request.method ?? ""} ${request.url ?? ""}`;
    seen.push(route);
    if (route === "GET /health.json") {
      const report = script.health(seen);
      if (report === "silent") return request.socket.destroy();
      response.setHeader("content-type", "application/json");
      return response.end(JSON.stringify(report));
    }
    if (route === "GET /backup.tar.gz") return response.end(script.backup);
    if (route === "GET /update/features") return response.end("partuuid,");
    if (request.method === "PUT") {
      const hash = createHash("sha256");
      request.on("data", (chunk: Buffer) => hash.update(chunk));
      request.on("end", () => response.end(hash.digest("hex")));
      return;
    }
    request.resume();
    request.on("end", () => response.end("ok"));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as AddressInfo).port, seen };
}

const report = (version: string, slot: "a" | "b", extra: Record<string, unknown> = {}) => ({
  first_error: "",
  hostname: "fake1",
  version,
  slot,
  trial: false,
  uptime_seconds: 100,
  checks: [],
  ...extra,
});

/** A directory with mbr.img, boot.img and a squashfs root.img reporting `version`. */
async function imagesOf(dir: string, version: string): Promise<string> {
  const tree = path.join(dir, "tree");
  await mkdir(path.join(tree, "etc", "rtr7"), { recursive: true });
  await writeFile(path.join(tree, "etc", "rtr7", "build.json"), JSON.stringify({ version }));
  await writeFile(path.join(dir, "mbr.img"), Buffer.alloc(440, 1));
  await writeFile(path.join(dir, "boot.img"), Buffer.alloc(64 * 1024, 2));
  await run("mksquashfs", [tree, path.join(dir, "root.img"), "-noappend", "-quiet"]);
  return dir;
}

async function gzipTar(dir: string): Promise<Buffer> {
  const source = path.join(dir, "perm");
  await mkdir(source, { recursive: true });
  await writeFile(path.join(source, "keep.txt"), "keep\n");
  await run("tar", ["czf", path.join(dir, "backup.tar.gz"), "-C", source, "."]);
  return readFile(path.join(dir, "backup.tar.gz"));
}

function options(port: number, work: string, extra: Partial<SafeUpdateOptions>): SafeUpdateOptions {
  return {
    hostname: "fake1",
    unit: () =>
      openUnit({ host: "127.0.0.1", port, diagdPort: port, backupdPort: port }, { password: "s3cret" }),
    updatesDir: path.join(work, "updates"),
    keepOnly: 5,
    healthTimeoutMs: 1500,
    kexec: true,
    trialDeadlineMs: 1000,
    recoverScript: { node: process.execPath, entry: path.join(work, "no-cli.js") },
    recover: () => Promise.reject(new Error("no recovery in this test")),
    log: silentLogger(),
    timings: { probeTimeoutMs: 300, downTimeoutMs: 1500, pollMs: 50 },
    ...extra,
  };
}

const skip =
  (await haveTool("mksquashfs")) && (await haveTool("unsquashfs")) ? false : "needs squashfs-tools";

test("an unhealthy unit, or one on trial, is left untouched: no run directory, only the health probe", async (t) => {
  const work = await scratchDir(t, "safe-update-flow");
  let answer: Record<string, unknown> | "silent" = report("v1", "a", {
    first_error: "tcp 192.0.2.1:80: refused",
  });
  const unit = await scriptedUnit(t, { health: () => answer, backup: Buffer.alloc(0) });
  const build = `touch "${path.join(work, "built")}"`;
  for (const [state, pattern] of [
    [answer, /is not healthy \(tcp 192\.0\.2\.1:80: refused\); nothing was changed/],
    [report("v2", "b", { trial: true }), /runs slot b \(v2\) on trial, not committed; nothing was changed/],
    ["silent", /fake1 \(127\.0\.0\.1:\d+\) does not answer \/health\.json; nothing was changed/],
  ] as const) {
    answer = state;
    unit.seen.length = 0;
    await assert.rejects(
      safeUpdate(options(unit.port, work, { buildCommand: build })),
      (error: unknown) => isRtr7Error(error, "RTR7_ERR_UNIT_UNHEALTHY") && pattern.test(error.message),
    );
    assert.deepEqual(unit.seen, ["GET /update/features", "GET /health.json"], "only reads");
  }
  // Nothing listens where the update API should be: not healthy either.
  const closed = await new Promise<number>((resolve) => {
    const probe = http.createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
  await assert.rejects(
    safeUpdate(options(closed, work, { buildCommand: build })),
    (error: unknown) =>
      isRtr7Error(error, "RTR7_ERR_UNIT_UNHEALTHY") &&
      /fake1 does not answer \(GET \/update\/features to 127\.0\.0\.1:\d+: connection refused.*\); nothing was changed/.test(
        error.message,
      ),
  );
  await assert.rejects(access(path.join(work, "updates")), "no run directory");
  await assert.rejects(access(path.join(work, "built")), "nothing built");
});

/** A fake clock: sleep moves it on at once. */
function fakeClock(start = Date.parse("2026-06-01T00:00:00Z")) {
  const clock = {
    at: start,
    now: () => clock.at,
    sleep: (ms: number) => ((clock.at += ms), Promise.resolve()),
  };
  return clock;
}

/**
 * A unit target in memory, on the fake clock. It runs `version` on slot a;
 * after a reboot into the trial it is silent for `bootMs`, then does what
 * `trial` says: come up healthy on the new version, stay silent, or fall
 * back to its committed slot by itself at `fallbackAtMs` after the reboot.
 */
class FakeUnit implements UnitTarget {
  readonly address = "fake1:80";
  readonly featuresText = "partuuid,updatehash,";
  readonly updateHash = "crc32" as const;
  readonly calls: string[] = [];
  report: HealthReport;
  private rebootAt: number | undefined;
  newVersion = "";

  constructor(
    private readonly clock: { now: () => number },
    private readonly backupBytes: Buffer,
    private readonly script: {
      bootMs: number;
      trial: "healthy" | "silent" | "falls back";
      fallbackAtMs?: number;
    },
  ) {
    this.report = {
      first_error: "",
      hostname: "fake1",
      version: "v1",
      slot: "a",
      trial: false,
      uptime_seconds: 900,
      checks: [],
    };
  }

  supports(): boolean {
    return true;
  }
  streamTo(target: string, source: unknown) {
    this.calls.push(`streamTo ${target}`);
    if (target === "root") this.newVersion = "v2";
    return Promise.resolve({
      bytes: String(source).length,
      hash: "00000000",
      algorithm: "crc32" as const,
      ms: 1,
    });
  }
  testboot() {
    this.calls.push("testboot");
    return Promise.resolve("slot b on trial");
  }
  switch() {
    this.calls.push("switch");
    return Promise.resolve("switched");
  }
  commit() {
    this.calls.push("commit");
    this.report = { ...this.report, trial: false };
    return Promise.resolve("committed");
  }
  reboot() {
    this.calls.push("reboot");
    this.rebootAt = this.clock.now();
    return Promise.resolve("rebooting");
  }
  health(): Promise<HealthReport | undefined> {
    return Promise.resolve(this.seen());
  }
  trust() {
    this.calls.push("trust");
    return Promise.resolve({ keys: [], running: { slot: "a" } });
  }
  introduceKey() {
    this.calls.push("introduceKey");
    return Promise.resolve({ changed: false, keys: [] });
  }
  sendManifest() {
    this.calls.push("sendManifest");
    return Promise.resolve({ slot: "b", version: "v2", verified: false });
  }
  private seen(): HealthReport | undefined {
    if (this.rebootAt === undefined) return this.report;
    const since = this.clock.now() - this.rebootAt;
    if (this.script.trial === "falls back" && since >= (this.script.fallbackAtMs ?? Infinity))
      return { ...this.report, uptime_seconds: 1 };
    if (since < this.script.bootMs || this.script.trial !== "healthy") return undefined;
    if (this.report.version !== this.newVersion)
      this.report = { ...this.report, version: this.newVersion, slot: "b", trial: true, uptime_seconds: 1 };
    return this.report;
  }
  async backup(to: string) {
    this.calls.push("backup");
    await writeFile(to, this.backupBytes);
    return { bytes: this.backupBytes.length };
  }

  /** The unit back on v1 after a recovery. */
  recovered(): void {
    this.rebootAt = undefined;
    this.report = { ...this.report, version: "v1", slot: "a", trial: false, uptime_seconds: 1 };
  }
}

async function fakeRun(t: TestContext) {
  const work = await scratchDir(t, "safe-update-flow");
  const newImages = await imagesOf(path.join(work, "v2"), "v2");
  return {
    work,
    backup: await gzipTar(work),
    flow: (
      unit: UnitTarget,
      clock: { now: () => number; sleep: (ms: number) => Promise<void> },
      extra: Partial<SafeUpdateOptions> = {},
    ): SafeUpdateOptions => ({
      hostname: "fake1",
      unit,
      updatesDir: path.join(work, "updates"),
      // The build also leaves what it was given of the unit's password, for the test to see.
      buildCommand: `cp "${newImages}"/*.img "$RTR7_OUT_DIR"/ && echo "password=\${RTR7_PASSWORD:-none}" > "$RTR7_OUT_DIR/build-env.txt"`,
      keepOnly: 5,
      healthTimeoutMs: 120_000,
      kexec: true,
      trialDeadlineMs: 180_000,
      recoverScript: { node: process.execPath, entry: path.join(work, "no-cli.js") },
      recover: () => Promise.reject(new Error("no recovery expected")),
      log: silentLogger(),
      timings: { probeTimeoutMs: 2000, downTimeoutMs: 30_000, pollMs: 500 },
      now: clock.now,
      sleep: clock.sleep,
      ...extra,
    }),
  };
}

async function events(runDir: string): Promise<{ event: string; how?: string }[]> {
  return (await readFile(path.join(runDir, "events.jsonl"), "utf8"))
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as { event: string; how?: string });
}

test(
  "the steps in order, each timed on the injected clock: the unit's 40 s boot costs no real time",
  { skip },
  async (t) => {
    const { backup, flow } = await fakeRun(t);
    const clock = fakeClock();
    const unit = new FakeUnit(clock, backup, { bootMs: 40_000, trial: "healthy" });
    const announced: string[] = [];
    process.env.RTR7_PASSWORD = "build-must-not-see-this";
    t.after(() => delete process.env.RTR7_PASSWORD);
    const result = await safeUpdate(flow(unit, clock, { onStep: (step) => announced.push(step) }));
    assert.equal(
      await readFile(path.join(result.runDir, "build-env.txt"), "utf8"),
      "password=none\n",
      "the build command inherited RTR7_PASSWORD",
    );
    assert.deepEqual(announced, [...safeUpdateSteps]);
    assert.deepEqual(
      result.steps.map((step) => [step.step, step.outcome]),
      safeUpdateSteps.map((step) => [step, "ok"]),
    );
    const timing = Object.fromEntries(result.steps.map((step) => [step.step, step]));
    assert.equal(timing.down?.ms, 0, "silent at the first probe after the reboot");
    assert.equal(timing.healthy?.ms, 40_000, "healthy at the first probe after the boot, on the fake clock");
    assert.equal(timing.healthy?.startedAt, "2026-06-01T00:00:00.000Z");
    assert.equal(result.gapSeconds, 40);
    assert.deepEqual([result.previousVersion, result.version], ["v1", "v2"]);
    assert.deepEqual(unit.calls, [
      "backup",
      "streamTo root",
      "streamTo boot",
      "streamTo mbr",
      "testboot",
      "reboot",
      "commit",
    ]);
    assert.equal(
      path.basename(result.runDir),
      "2026-06-01T00-00-00Z",
      "the run is named on the injected clock",
    );
  },
);

test(
  "a trial that never comes up falls back by itself: rolled back without recovery, the waits on the fake clock",
  { skip },
  async (t) => {
    const { backup, flow } = await fakeRun(t);
    const clock = fakeClock();
    const unit = new FakeUnit(clock, backup, { bootMs: 10_000, trial: "falls back", fallbackAtMs: 200_000 });
    const recovered: RecoveryRequest[] = [];
    const started = clock.now();
    let runDir = "";
    await assert.rejects(
      safeUpdate(
        flow(unit, clock, {
          recover: (request) => {
            recovered.push(request);
            return Promise.resolve();
          },
        }),
      ),
      (error: unknown) => {
        assert.ok(isRtr7Error(error, "RTR7_ERR_UPDATE_FAILED"), String(error));
        runDir = (error as unknown as { runDir: string }).runDir;
        assert.match(
          error.message,
          /v2 was not healthy within 120 s; it never answered; rolled back: fake1 now runs v1 \(slot a\)$/,
        );
        const steps = (error as unknown as { steps: { step: string; outcome: string }[] }).steps;
        assert.deepEqual(
          steps.map((step) => `${step.step}:${step.outcome}`),
          ["health:ok", "backup:ok", "build:ok", "push:ok", "testboot:ok", "down:ok", "healthy:failed"],
        );
        return true;
      },
    );
    assert.equal(recovered.length, 0);
    assert.ok(clock.now() - started >= 200_000, "the fallback was waited for, on the fake clock");
    assert.deepEqual(
      (await events(runDir)).filter((event) => event.event === "rollback").map((event) => event.how),
      ["fallback"],
    );
    assert.deepEqual(unit.calls.slice(-2), ["testboot", "reboot"], "no second reboot: it was silent");
  },
);

test(
  "silent after the reboot and past its fallback: recover() gets the last good run's images and this run's backup",
  { skip },
  async (t) => {
    const { work, backup, flow } = await fakeRun(t);
    const goodRun = path.join(work, "updates", "fake1", "2026-01-01T00-00-00Z");
    await mkdir(goodRun, { recursive: true });
    await imagesOf(goodRun, "v1");
    await writeFile(
      path.join(goodRun, "run.json"),
      JSON.stringify({
        hostname: "fake1",
        status: "committed",
        version: "v1",
        startedAt: "2026-01-01T00:00:00Z",
      }),
    );
    const clock = fakeClock();
    const unit = new FakeUnit(clock, backup, { bootMs: 10_000, trial: "silent" });
    const requests: RecoveryRequest[] = [];
    await assert.rejects(
      safeUpdate(
        flow(unit, clock, {
          recover: (request) => {
            requests.push(request);
            unit.recovered();
            return Promise.resolve();
          },
        }),
      ),
      (error: unknown) =>
        isRtr7Error(error, "RTR7_ERR_UPDATE_FAILED") &&
        /v2 was not healthy within 120 s; it never answered; rolled back: fake1 now runs v1 \(slot a\), recovered from /.test(
          error.message,
        ),
    );
    const runs = (await readdir(path.join(work, "updates", "fake1"))).sort();
    assert.deepEqual(runs, ["2026-01-01T00-00-00Z", "2026-06-01T00-00-00Z"]);
    const thisRun = path.join(work, "updates", "fake1", runs[1] ?? "");
    assert.equal(requests.length, 1);
    assert.equal(requests[0]?.hostname, "fake1");
    assert.equal(requests[0]?.imageDir, goodRun);
    assert.deepEqual(requests[0]?.images, {
      mbr: path.join(goodRun, "mbr.img"),
      boot: path.join(goodRun, "boot.img"),
      root: path.join(goodRun, "root.img"),
      backup: path.join(thisRun, "backup.tar.gz"),
    });
    assert.ok((await readFile(path.join(thisRun, "backup.tar.gz"))).equals(backup), "this run's backup");
    assert.deepEqual(
      (await events(thisRun)).filter((event) => event.event === "rollback").map((event) => event.how),
      ["recover"],
    );
    const record = JSON.parse(await readFile(path.join(thisRun, "run.json"), "utf8")) as { status: string };
    assert.equal(record.status, "failed");
  },
);
