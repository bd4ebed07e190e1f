// The simulated units of `npm run bench`'s fleet rollouts (lab/sim-fleet.ts)
// against rtr7's own client, to show they speak the protocol a real unit
// does: two sim units on loopback; the unit target (openUnit) streams a
// root image (CRC-32 and SHA-256), a gzip'd boot image and the MBR, the
// backup passes safe-update's check, testboot + reboot bring the new
// version up on trial, commit keeps it; a trial left uncommitted falls back
// by itself; a wrong password is RTR7_ERR_UPDATE_AUTH; and the real
// safeUpdate takes a unit from v1 to v2. The sims listen on high ports
// (openUnit takes them), so this needs no root, only the squashfs tools.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { haveTool } from "../../lab/processes.js";
import { makeSimRelease } from "../../lab/sim-fleet-release.js";
import { startSimFleet, type SimFleet } from "../../lab/sim-fleet.js";
import { silentLogger } from "../../lib/log.js";
import type { HealthReport } from "../../lib/wire/health.js";
import { openUnit, type UnitTarget } from "../../updates/client/index.js";
import { safeUpdate } from "../../updates/safe-update.js";
import { loadRelease } from "../../updates/release.js";
import { verifyBackup } from "../../updates/backup-check.js";
import { cliEntry } from "../helpers/paths.js";

const ports = { update: 18_480, diagd: 18_733, backupd: 18_477 };
const password = "sim-fleet-test-password";

async function cannotRun(): Promise<string | undefined> {
  for (const tool of ["mksquashfs", "unsquashfs"])
    if (!(await haveTool(tool))) return `needs ${tool}: run scripts/setup.sh`;
  return undefined;
}
const skip = await cannotRun();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(
  unit: UnitTarget,
  want: (report: HealthReport) => boolean,
  what: string,
): Promise<HealthReport> {
  let last: HealthReport | undefined;
  for (let tries = 0; tries < 200; tries += 1) {
    const report = await unit.health({ timeoutMs: 1000 });
    if (report) last = report;
    if (report && want(report)) return report;
    await sleep(50);
  }
  throw new Error(`waiting for ${what}: last saw ${JSON.stringify(last)}`);
}

describe("simulated fleet units against rtr7's unit target", { skip, timeout: 120_000 }, () => {
  let work: string;
  let fleet: SimFleet;
  const release = (version: string) => path.join(work, version);
  const open = (index: number, options: Parameters<typeof openUnit>[2] = {}) =>
    openUnit(
      {
        host: fleet.units[index]?.address ?? "",
        port: ports.update,
        diagdPort: ports.diagd,
        backupdPort: ports.backupd,
      },
      { password },
      options,
    );

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "rtr7-sim-fleet-"));
    await makeSimRelease(release("v1"), "v1");
    await makeSimRelease(release("v2"), "v2");
    fleet = await startSimFleet({
      count: 2,
      firstAddress: "127.0.77.1",
      password,
      releases: [release("v1"), release("v2")],
      downMs: 200,
      ports,
    });
  });

  after(async () => {
    await fleet?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test("push, testboot, reboot, health on trial, commit; a wrong password is refused", async () => {
    const unit = await open(0);
    assert.equal(unit.featuresText, "partuuid,updatehash,gzip,");
    assert.equal(unit.updateHash, "crc32");
    const before = await unit.health();
    assert.deepEqual(
      { version: before?.version, slot: before?.slot, trial: before?.trial, firstError: before?.first_error },
      { version: "v1", slot: "a", trial: false, firstError: "" },
    );
    assert.equal(before?.hostname, "sim-0001");

    const backup = path.join(work, "backup.tar.gz");
    await unit.backup(backup);
    assert.ok((await verifyBackup(backup)).entries >= 3);

    const pushed = await unit.streamTo("root", path.join(release("v2"), "root.img"));
    assert.equal(pushed.algorithm, "crc32");
    const sha = await open(0, { updateHash: "sha256" });
    assert.equal((await sha.streamTo("root", path.join(release("v2"), "root.img"))).hash.length, 64);
    await unit.streamTo("boot", path.join(release("v2"), "boot.img"));
    await unit.streamTo("mbr", path.join(release("v2"), "mbr.img"));

    await unit.testboot({ deadlineMs: 60_000 });
    await assert.rejects(unit.reboot({ kexec: false }), { code: "RTR7_ERR_UPDATE_REQUEST" });
    await unit.reboot();
    const trial = await waitFor(unit, (report) => report.version === "v2", "v2 on trial");
    assert.deepEqual({ slot: trial.slot, trial: trial.trial }, { slot: "b", trial: true });
    await unit.commit();
    const committed = await unit.health();
    assert.deepEqual(
      { version: committed?.version, trial: committed?.trial },
      { version: "v2", trial: false },
    );

    // A plain reboot now comes up on the committed slot.
    await unit.reboot();
    await sleep(50);
    const again = await waitFor(unit, (report) => report.slot === "b", "the committed slot after a reboot");
    assert.deepEqual({ version: again.version, trial: again.trial }, { version: "v2", trial: false });

    await assert.rejects(
      openUnit(
        { host: fleet.units[0]?.address ?? "", port: ports.update, diagdPort: ports.diagd },
        { password: "wrong" },
      ),
      { code: "RTR7_ERR_UPDATE_AUTH" },
    );
  });

  test("a trial that is never committed falls back to the committed slot", async () => {
    const unit = await open(1);
    await unit.streamTo("root", path.join(release("v2"), "root.img"));
    await unit.testboot({ deadlineMs: 1000 });
    await unit.reboot();
    await waitFor(unit, (report) => report.version === "v2" && report.trial, "v2 on trial");
    const back = await waitFor(unit, (report) => report.version === "v1", "the fallback to v1");
    assert.deepEqual({ slot: back.slot, trial: back.trial }, { slot: "a", trial: false });
  });

  test("safe-update takes one sim unit from v1 to v2 (a release) and another back to v1 (a build command)", async () => {
    const updatesDir = path.join(work, "updates");
    const common = {
      updatesDir,
      keepOnly: 2,
      healthTimeoutMs: 20_000,
      kexec: true,
      recoverScript: { node: process.execPath, entry: cliEntry },
      recover: () => Promise.reject(new Error("a sim unit is never recovered")),
      log: silentLogger(),
      timings: { pollMs: 100 },
    };
    const forward = await safeUpdate({
      ...common,
      hostname: "sim-0002",
      unit: () => open(1),
      release: await loadRelease(release("v2")),
    });
    assert.deepEqual({ from: forward.previousVersion, to: forward.version }, { from: "v1", to: "v2" });
    assert.ok((await verifyBackup(path.join(forward.runDir, "backup.tar.gz"))).entries >= 3);
    const now = await (await open(1)).health();
    assert.deepEqual(
      { version: now?.version, trial: now?.trial, slot: now?.slot },
      { version: "v2", trial: false, slot: "b" },
    );

    // Unit 0 runs v2 from the first test: a build command that copies v1's images takes it back.
    const images = release("v1");
    const copy = ["mbr.img", "boot.img", "root.img"].map((name) => JSON.stringify(path.join(images, name)));
    const back = await safeUpdate({
      ...common,
      hostname: "sim-0001",
      unit: () => open(0),
      buildCommand: `cp ${copy.join(" ")} "$RTR7_OUT_DIR"/`,
    });
    assert.deepEqual({ from: back.previousVersion, to: back.version }, { from: "v2", to: "v1" });
  });
});
