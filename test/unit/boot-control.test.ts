// The boot state on a real FAT boot partition (mkfs.fat + mtools, as on a
// unit): DEFAULT names the committed slot and only switch and commit change
// it; a trial is handed to the platform as a kexec, never written as the
// default; a reboot without kexec while a trial waits is refused; and the
// trial record tells the next boot whether it rolled back.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { test, type TestContext } from "node:test";
import { promisify } from "node:util";
import { isRtr7Error } from "../../lib/errors.js";
import { silentLogger } from "../../lib/log.js";
import { settleTrialRecord, SyslinuxBootControl, type NextBoot } from "../../router/boot/boot-control.js";
import { bootConfigSector, readBootConfig, writeBootFile } from "../../router/boot/boot-partition.js";
import { parseBootConfig, renderBootConfig, slotBootConfig } from "../../lib/wire/boot-config.js";
import type { Slot, UnitPaths } from "../../router/unit.js";
import { requireRootAndTools } from "../helpers/netns.js";
import { scratchDir } from "../helpers/scratch.js";

const run = promisify(execFile);
const diskId = 0x1234abcd;

test("syslinux.cfg names both slots by PARTUUID, each with its own kernel, DEFAULT the committed one, in one sector", () => {
  const bytes = renderBootConfig(slotBootConfig({ diskId, defaultSlot: "a" }));
  assert.equal(bytes.length, 512);
  const config = parseBootConfig(bytes.toString("utf8"));
  assert.equal(config.defaultSlot, "a");
  assert.match(config.labels.a?.append ?? "", /root=PARTUUID=1234abcd-02 .*rtr7\.slot=a/);
  assert.match(config.labels.b?.append ?? "", /root=PARTUUID=1234abcd-03 .*rtr7\.slot=b/);
  assert.equal(config.labels.a?.kernel, "a/vmlinuz");
  assert.equal(config.labels.b?.initrd, "b/initrd.img");
  const switched = renderBootConfig({ ...config, defaultSlot: "b" });
  assert.equal(parseBootConfig(switched.toString("utf8")).defaultSlot, "b");
  assert.equal(switched.toString("utf8").replace("DEFAULT b", "DEFAULT a"), bytes.toString("utf8"));
  // Padded to a given size (a legacy file's), refused when it does not fit.
  assert.equal(renderBootConfig(config, 456).length, 456);
  assert.throws(
    () => renderBootConfig(slotBootConfig({ diskId, defaultSlot: "a", extraParameters: "x".repeat(100) })),
    (error) => isRtr7Error(error, "RTR7_ERR_BOOT_CONFIG"),
  );
  assert.throws(
    () => parseBootConfig("LABEL a\n"),
    (error) => isRtr7Error(error, "RTR7_ERR_BOOT_CONFIG"),
  );
});

async function fatBoot(t: TestContext): Promise<UnitPaths> {
  const dir = await scratchDir(t, "boot-control");
  const boot = path.join(dir, "boot.img");
  await run("truncate", ["-s", "40M", boot]);
  await run("mkfs.fat", ["-F", "32", "--invariant", boot]);
  await writeBootFile(boot, "syslinux.cfg", renderBootConfig(slotBootConfig({ diskId, defaultSlot: "a" })));
  await mkdir(path.join(dir, "perm"));
  return {
    boot,
    roots: { a: path.join(dir, "root-a.img"), b: path.join(dir, "root-b.img") },
    mbr: path.join(dir, "mbr.img"),
    perm: path.join(dir, "perm"),
    etc: path.join(dir, "etc"),
    run: path.join(dir, "run"),
  };
}

function control(paths: UnitPaths, slot: Slot, trial: boolean, reboots: NextBoot[]) {
  return new SyslinuxBootControl({
    paths,
    slot,
    trial,
    log: silentLogger(),
    rebooter: (next) => {
      reboots.push(next);
      return Promise.resolve();
    },
  });
}

const defaultOf = async (paths: UnitPaths): Promise<Slot> => (await readBootConfig(paths.boot)).defaultSlot;

test("testboot reaches the other slot by kexec only; commit makes it the default", async (t) => {
  if (!(await requireRootAndTools(t, ["mkfs.fat", "mcopy"]))) return;
  const paths = await fatBoot(t);
  const reboots: NextBoot[] = [];
  const onA = control(paths, "a", false, reboots);
  assert.equal(await onA.committedSlot(), "a");

  await onA.testboot("b", { deadlineMs: 5000 });
  await assert.rejects(
    onA.reboot({ kexec: false }),
    (error) => isRtr7Error(error, "RTR7_ERR_UPDATE_REQUEST") && /needs kexec/.test(error.message),
  );
  await onA.reboot({ kexec: true });
  assert.deepEqual(reboots, [{ slot: "b", trial: true, trialDeadlineMs: 5000, kexec: true }]);
  assert.equal(await defaultOf(paths), "a", "a trial never becomes the default");

  // The trial boot: not committed, then rebooted: back on a, and the record says so.
  const onTrial = control(paths, "b", true, reboots);
  assert.deepEqual(await settleTrialRecord(paths, onTrial.running()), {});
  await onTrial.reboot({ kexec: false });
  assert.deepEqual(reboots.at(-1), { slot: "a", trial: false, kexec: false });
  assert.deepEqual(await settleTrialRecord(paths, { slot: "a", trial: false }), { rolledBackFrom: "b" });
  assert.deepEqual(await settleTrialRecord(paths, { slot: "a", trial: false }), {}, "counted once");

  // Committed this time: b is the default and stays.
  const committedTrial = control(paths, "b", true, reboots);
  assert.equal(await committedTrial.commit(), "b");
  assert.equal(await defaultOf(paths), "b");
  assert.deepEqual(committedTrial.running(), { slot: "b", trial: false });
  await committedTrial.reboot({ kexec: false });
  assert.deepEqual(reboots.at(-1), { slot: "b", trial: false, kexec: false });
});

test("switch is permanent; keepDefault restores the default after a new boot image", async (t) => {
  if (!(await requireRootAndTools(t, ["mkfs.fat", "mcopy"]))) return;
  const paths = await fatBoot(t);
  const boot = control(paths, "a", false, []);
  await boot.switchTo("b");
  assert.equal(await defaultOf(paths), "b");
  // A new boot image arrives with DEFAULT a; the committed b must stay the default.
  await writeBootFile(
    paths.boot,
    "syslinux.cfg",
    renderBootConfig(slotBootConfig({ diskId, defaultSlot: "a" })),
  );
  await boot.keepDefault("b");
  assert.equal(await defaultOf(paths), "b");
});

test("switch and commit rewrite syslinux.cfg as one sector in place, nothing else", async (t) => {
  if (!(await requireRootAndTools(t, ["mkfs.fat", "mcopy"]))) return;
  const paths = await fatBoot(t);
  const sector = await bootConfigSector(paths.boot);
  assert.ok(sector, "syslinux.cfg sits in one sector");
  const changedSectors = async (action: () => Promise<unknown>): Promise<number[]> => {
    const before = await readFile(paths.boot);
    await action();
    const after = await readFile(paths.boot);
    const changed: number[] = [];
    for (let at = 0; at < before.length; at += 512)
      if (!before.subarray(at, at + 512).equals(after.subarray(at, at + 512))) changed.push(at);
    return changed;
  };
  assert.deepEqual(await changedSectors(() => control(paths, "a", false, []).switchTo("b")), [sector.offset]);
  assert.equal(await defaultOf(paths), "b");
  assert.deepEqual(await changedSectors(() => control(paths, "a", true, []).commit()), [sector.offset]);
  assert.equal(await defaultOf(paths), "a");
  // Already the default: not even that sector is written.
  assert.deepEqual(await changedSectors(() => control(paths, "a", false, []).switchTo("a")), []);
});
