// End to end in QEMU: a unit booted from its own disk (v1) is updated to v2
// by `rtr7 safe-update` with kexec, and the connectivity gap (the last
// healthy answer before the reboot to the first after) is measured and
// printed. Then the run's recover.bash, run from another directory, starts
// `rtr7 recover` with that run's images and backup: a network-only unit
// with a blank disk is re-imaged and boots v2 from it, /perm restored.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { Netns } from "../../lab/netns.js";
import { missingPrerequisite, type Started } from "../../lab/processes.js";
import { diskUnitArgs, recoveryUnitArgs } from "../../lab/qemu.js";
import { planLayout } from "../../lib/wire/disk-layout.js";
import { cliEntry } from "../helpers/paths.js";
import { jsonEvents } from "../helpers/scratch.js";
import { startDiskUnit, waitForUnit } from "../helpers/qemu-unit.js";
import { removeUnitImages, unitImages } from "../helpers/unit-images.js";

const execFileAsync = promisify(execFile);
const hostname = "qemu5";
const unitMac = "52:54:00:12:34:61";
const unitAddress = "10.94.0.2";
const password = "qemu5-secret";
const bootTimeoutMs = 300_000;

const skip = await missingPrerequisite(
  ["qemu-system-x86_64", "mksquashfs", "mkfs.fat", "mcopy", "syslinux", "mke2fs", "curl", "tar", "busybox"],
  "network namespaces and a tap device",
);

describe("safe-update and recover.bash with a QEMU unit", { skip, timeout: 25 * 60_000 }, () => {
  let work: string;
  let ns: Netns;
  let unit: Started | undefined;
  let v1: string;
  let v2: string;
  let runDir: string;

  const waitForVersion = (version: string, timeoutMs: number) =>
    waitForUnit(ns, unitAddress, { version }, timeoutMs, () => unit?.output().slice(-4000) ?? "");

  before(async () => {
    if (skip) return;
    [v1, v2] = await Promise.all([
      unitImages({ hostname, version: "v1" }),
      unitImages({ hostname, version: "v2" }),
    ]);
    work = await mkdtemp(path.join(tmpdir(), "rtr7-e2e-update-"));
    ns = await Netns.create("suq");
    await ns.addTap("tap0", "10.94.0.254/24");
    await ns.setHosts({ [hostname]: unitAddress });
    ({ unit } = await startDiskUnit({
      ns,
      work,
      imagesDir: v1,
      hostname,
      mac: unitMac,
      address: unitAddress,
      password,
      permFiles: { "dhcp4d/leases.json": '{"leases":[]}\n' },
      bootTimeoutMs,
    }));
    await waitForVersion("v1", 60_000);
  });

  after(async () => {
    await unit?.stop(2000);
    await ns?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
    await removeUnitImages();
  });

  test("v1 → v2 with kexec; the connectivity gap is measured", async () => {
    const updatesDir = path.join(work, "updates");
    const update = ns.start(
      process.execPath,
      [
        cliEntry,
        "safe-update",
        "--hostname",
        hostname,
        "--updates-dir",
        updatesDir,
        "--build-command",
        `cp "${v2}"/mbr.img "${v2}"/boot.img "${v2}"/root.img "$RTR7_OUT_DIR"/`,
        "--health-timeout",
        "4m",
        "--json",
      ],
      { env: { ...process.env, RTR7_PASSWORD: password, XDG_CONFIG_HOME: path.join(work, "config") } },
    );
    const code = await update.exited(10 * 60_000);
    assert.equal(
      code,
      0,
      `${update.output().slice(-4000)}\n--- console:\n${unit?.output().slice(-3000) ?? ""}`,
    );
    const updated = jsonEvents(update.output()).find((event) => event.event === "updated");
    assert.equal(updated?.version, "v2");
    console.log(
      `QEMU v1 → v2 with kexec: connectivity gap ${Number(updated?.gapSeconds).toFixed(1)} s (software emulation)`,
    );
    await waitForVersion("v2", 30_000);
    const runs = await readdir(path.join(updatesDir, hostname));
    runDir = path.join(updatesDir, hostname, runs[0] ?? "");
  });

  test("recover.bash re-images a blank unit with the run's images and backup", async (t) => {
    if (!runDir) return t.skip("needs the update of the previous test");
    await unit?.stop(2000);
    const blank = path.join(work, "blank.img");
    await writeFile(blank, "");
    await truncate(blank, 2 * 1024 ** 3);
    // From another working directory, with the flags this lab needs.
    const recover = ns.start(
      "bash",
      [path.join(runDir, "recover.bash"), "--interface=tap0", "--no-reset", `--timeout=6m`, "--json"],
      { env: { ...process.env, RTR7_PASSWORD: password, XDG_CONFIG_HOME: path.join(work, "config") } },
    );
    await recover.waitForLine(/"event":"start"/, 240_000);
    unit = ns.start("qemu-system-x86_64", recoveryUnitArgs({ tap: "tap0", disk: blank, mac: unitMac }));
    const code = await recover.exited(8 * 60_000);
    await unit.stop(2000);
    assert.equal(code, 0, recover.output().slice(-4000));
    const root = await readFile(path.join(runDir, "root.img"));
    const slotA = planLayout(2 * 1024 ** 3).partitions[1];
    const handle = await (await import("node:fs/promises")).open(blank, "r");
    const written = Buffer.alloc(root.length);
    await handle.read(written, 0, root.length, slotA?.byteOffset ?? 0);
    await handle.close();
    assert.ok(written.equals(root), "slot A holds the run's root.img");

    // The recovered unit boots v2 with /perm restored from the run's backup.
    unit = ns.start("qemu-system-x86_64", diskUnitArgs({ tap: "tap0", disk: blank, mac: unitMac }));
    await unit.waitForLine(/rtr7 init: up/, bootTimeoutMs);
    await waitForVersion("v2", 60_000);
    await ns.exec("curl", [
      "-u",
      `gokrazy:${password}`,
      "-sS",
      "--max-time",
      "20",
      "-o",
      path.join(work, "after.tar.gz"),
      `http://${unitAddress}:8077/backup.tar.gz`,
    ]);
    const { stdout } = await execFileAsync("tar", ["tzf", path.join(work, "after.tar.gz")]);
    assert.match(stdout, /dhcp4d\/leases\.json/);
  });
});
