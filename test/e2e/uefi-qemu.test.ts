// End to end with UEFI firmware: one QEMU unit (software emulation) running
// OVMF, Debian's x86-64 UEFI firmware. `rtr7 recover` re-images its blank
// disk over PXE (the firmware's DHCP asks for architecture 7 and gets
// syslinux.efi) with v1, a fleet release (built without --hostname, its
// syslinux.cfg naming disk 0, which recovery-init points at this disk); then
// the unit boots its own disk through boot.img's EFI/BOOT/BOOTX64.EFI
// (syslinux.efi) and reports v1 under the hostname recovery gave it. Its
// update API takes the password the workstation keeps for it
// (XDG_CONFIG_HOME/gokrazy/hosts/uefi1/http-password.txt), not the older one
// in the restored backup, and refuses a wrong one: no console read needed; `rtr7 safe-update`
// takes it to v2 with a kexec trial and a commit, and a hard power-off
// (SIGKILL of QEMU) boots v2 again; a v3 whose init exits at once is tried
// and never committed: the unit panics, OVMF reboots it, and syslinux.efi
// boots the committed v2 by itself.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Netns } from "../../lab/netns.js";
import { missingPrerequisite, run, type Started } from "../../lab/processes.js";
import { diskUnitArgs, ovmfFiles, recoveryUnitArgs, uefiVarsFile } from "../../lab/qemu.js";
import { newestKernel } from "../../lib/host-kernel.js";
import { cliEntry } from "../helpers/paths.js";
import { unitHealth, waitForUnit } from "../helpers/qemu-unit.js";
import { jsonEvents, recoverArgs } from "../helpers/scratch.js";
import { removeUnitImages, unitImages } from "../helpers/unit-images.js";

const hostname = "uefi1";
const unitMac = "52:54:00:12:34:96";
// rtr7 recover offers .1 (--recover-octet), and recovery-init writes it into interfaces.json.
const unitAddress = "10.96.0.1";
const password = "uefi1-secret";
const bootTimeoutMs = 180_000;

const skip = await missingPrerequisite(
  [
    "qemu-system-x86_64",
    ovmfFiles.code,
    ovmfFiles.varsTemplate,
    "mksquashfs",
    "mkfs.fat",
    "mcopy",
    "syslinux",
    "mke2fs",
    "curl",
    "tar",
    "busybox",
  ],
  "network namespaces and a tap device",
);

/** OVMF's lines for each boot option it started, e.g. `BdsDxe: starting Boot0001 "UEFI Misc Device" ...`. */
const firmwareBoots = (output: string): string[] =>
  output.split("\n").filter((line) => line.includes("BdsDxe: starting"));

/**
 * The slot whose kernel syslinux.efi loaded last: it puts the kernel's path
 * first on the command line (a kexec'd kernel has no BOOT_IMAGE=).
 */
const lastSlotFromDisk = (output: string): string | undefined =>
  [...output.matchAll(/command line: BOOT_IMAGE=\/([ab])\/vmlinuz /gi)].at(-1)?.[1];

describe(
  "a UEFI unit (OVMF): recovered over PXE, boots its disk, updates and falls back",
  { skip, timeout: 15 * 60_000 },
  () => {
    let work: string;
    let ns: Netns;
    let disk: string;
    let vars: string;
    let unit: Started | undefined;
    const images: Record<string, string> = {};
    let reached = "";
    let committedSlot: string | undefined;

    const consoleText = (): string => unit?.output() ?? "";
    const waitForVersion = (version: string, timeoutMs: number) =>
      waitForUnit(ns, unitAddress, { version }, timeoutMs, () => consoleText().slice(-4000));

    /** Starts QEMU on the unit's disk with OVMF and its own variable store; waits for init. */
    async function bootDisk(): Promise<number> {
      const started = Date.now();
      unit = ns.start(
        "qemu-system-x86_64",
        diskUnitArgs({ tap: "tap0", disk, mac: unitMac, firmware: "uefi", uefiVars: vars }),
      );
      await unit.waitForLine(/rtr7 init: up/, bootTimeoutMs);
      return (Date.now() - started) / 1000;
    }

    /** Powers the unit off hard: SIGKILL, the disk and the variable store kept as they were left. */
    async function powerOff(): Promise<void> {
      if (!unit || unit.child.exitCode !== null) return;
      unit.child.kill("SIGKILL");
      await unit.exited(10_000);
    }

    /** The workstation's environment: its own gokrazy configuration, no RTR7_PASSWORD. */
    function workstationEnv(): NodeJS.ProcessEnv {
      const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: path.join(work, "xdg") };
      delete env.RTR7_PASSWORD;
      return env;
    }

    /** The HTTP status of the update API's GET /update/features with these credentials. */
    async function featuresStatus(credentials: string): Promise<string> {
      const result = await ns.exec("curl", [
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
        "-u",
        credentials,
        `http://${unitAddress}/update/features`,
      ]);
      return result.stdout.trim();
    }

    function safeUpdate(version: string, extra: string[]): Started {
      const source = images[version] ?? "";
      return ns.start(
        process.execPath,
        [
          cliEntry,
          "safe-update",
          "--hostname",
          hostname,
          "--address",
          unitAddress,
          "--updates-dir",
          path.join(work, "updates"),
          "--build-command",
          `cp "${source}"/mbr.img "${source}"/boot.img "${source}"/root.img "$RTR7_OUT_DIR"/`,
          "--json",
          ...extra,
        ],
        // The pin recover recorded is in the test's workstation, not the user's ~/.config.
        { env: { ...process.env, RTR7_PASSWORD: password, XDG_CONFIG_HOME: path.join(work, "xdg") } },
      );
    }

    before(async () => {
      if (skip) return;
      work = await mkdtemp(path.join(tmpdir(), "rtr7-e2e-uefi-"));
      const exitAtOnce = path.join(work, "exit-at-once.mjs");
      await writeFile(exitAtOnce, 'console.log("v3 init: exiting at once");\nprocess.exit(1);\n');
      [images.v1, images.v2, images.v3] = await Promise.all([
        // A fleet release: no hostname.
        unitImages({ version: "v1" }),
        unitImages({ hostname, version: "v2" }),
        unitImages({ hostname, version: "v3", routerEntry: exitAtOnce }),
      ]);
      // The recovery restores /perm from this backup, which holds an older
      // password; the workstation's (in its own XDG_CONFIG_HOME) must win.
      const perm = path.join(work, "perm");
      await mkdir(perm);
      await writeFile(path.join(perm, "gokr-pw.txt"), "an-older-password\n");
      await writeFile(path.join(perm, "marker.txt"), "kept\n");
      const hostDir = path.join(work, "xdg", "gokrazy", "hosts", hostname);
      await mkdir(hostDir, { recursive: true });
      await writeFile(path.join(hostDir, "http-password.txt"), `${password}\n`, { mode: 0o600 });
      await run("tar", ["czf", path.join(work, "backup.tar.gz"), "-C", perm, "."]);
      ns = await Netns.create("uefi");
      await ns.addTap("tap0", "10.96.0.254/24");
      disk = path.join(work, "disk.img");
      await writeFile(disk, "");
      await truncate(disk, 2 * 1024 ** 3);
      vars = await uefiVarsFile(path.join(work, "OVMF_VARS.fd"));
    });

    after(async () => {
      await unit?.stop(2000);
      await ns?.destroy();
      if (work) await rm(work, { recursive: true, force: true });
      await removeUnitImages();
    });

    test("rtr7 recover re-images the blank disk over UEFI PXE; the unit then boots its disk (v1)", async () => {
      const v1 = images.v1 ?? "";
      const started = Date.now();
      const recover = ns.start(
        process.execPath,
        recoverArgs({
          interfaceName: "tap0",
          hostname,
          images: { mbr: `${v1}/mbr.img`, boot: `${v1}/boot.img`, root: `${v1}/root.img` },
          kernel: newestKernel(),
          initrd: "default",
          extra: [
            `--backup=${path.join(work, "backup.tar.gz")}`,
            `--mac=${unitMac}`,
            "--timeout=5m",
            "--json",
          ],
        }),
        { env: workstationEnv() },
      );
      await recover.waitForLine(/"event":"start"/, 240_000);
      unit = ns.start(
        "qemu-system-x86_64",
        recoveryUnitArgs({ tap: "tap0", disk, mac: unitMac, firmware: "uefi", uefiVars: vars }),
      );
      const code = await recover.exited(6 * 60_000);
      await unit.stop(2000);
      assert.equal(code, 0, `${recover.output().slice(-4000)}\n--- console:\n${consoleText().slice(-3000)}`);
      const sent = jsonEvents(recover.output())
        .filter((event) => event.subsystem === "tftp" && event.event === "tftp-sent")
        .map((event) => String(event.file));
      for (const name of ["syslinux.efi", "ldlinux.e64"])
        assert.ok(sent.includes(name), `${name} was not sent over TFTP (sent: ${sent.join(", ")})`);
      assert.ok(!sent.includes("pxelinux.0"), "the unit network-booted as a BIOS unit");
      const recoverySeconds = (Date.now() - started) / 1000;

      const bootSeconds = await bootDisk();
      await waitForVersion("v1", 60_000);
      const boots = firmwareBoots(consoleText());
      assert.equal(boots.length, 1, boots.join("\n"));
      assert.doesNotMatch(boots[0] ?? "", /PXE/, "OVMF booted the network, not the disk");
      assert.equal(lastSlotFromDisk(consoleText()), "a", "syslinux.efi did not boot slot a");
      // The fleet release took the hostname recovery wrote to /perm/hostname.
      assert.equal((await unitHealth(ns, unitAddress))?.hostname, hostname);
      assert.match(consoleText(), new RegExp(`rtr7 init: ${hostname} v1 on slot a`));
      // The workstation's password for uefi1 opens the update API; others do not.
      assert.equal(await featuresStatus(`gokrazy:${password}`), "200");
      assert.equal(await featuresStatus("gokrazy:an-older-password"), "401");
      assert.equal(await featuresStatus("gokrazy:wrong"), "401");
      console.log(
        `UEFI unit: recovery over PXE ${recoverySeconds.toFixed(1)} s, then the disk booted to init in ${bootSeconds.toFixed(1)} s (software emulation)`,
      );
      reached = "v1";
    });

    test("v1 → v2 by safe-update (kexec trial, commit); a hard power-off boots v2 again", async (t) => {
      if (reached !== "v1") return t.skip("needs the v1 unit of the previous test");
      const update = safeUpdate("v2", ["--health-timeout", "3m"]);
      const code = await update.exited(6 * 60_000);
      assert.equal(code, 0, `${update.output().slice(-4000)}\n--- console:\n${consoleText().slice(-3000)}`);
      const updated = jsonEvents(update.output()).find((event) => event.event === "updated");
      assert.equal(updated?.version, "v2");
      assert.match(consoleText(), /kexec into slot \w+ \(trial\)/);
      assert.equal(firmwareBoots(consoleText()).length, 1, "the trial went through the firmware, not kexec");
      await waitForVersion("v2", 30_000);
      committedSlot = (await unitHealth(ns, unitAddress))?.slot;
      assert.equal(committedSlot, "b");

      await powerOff();
      const bootSeconds = await bootDisk();
      await waitForVersion("v2", 60_000);
      // syslinux.efi read the DEFAULT that the commit wrote into /syslinux.cfg.
      assert.equal(lastSlotFromDisk(consoleText()), committedSlot);
      console.log(
        `UEFI unit: v2 committed; after a hard power-off it booted to init in ${bootSeconds.toFixed(1)} s`,
      );
      reached = "v2";
    });

    test("v3 (its init exits at once) is tried and never committed: the unit falls back to v2 by itself", async (t) => {
      if (reached !== "v2") return t.skip("needs the committed v2 of the previous test");
      const bootsBefore = firmwareBoots(consoleText()).length;
      const started = Date.now();
      const update = safeUpdate("v3", ["--health-timeout", "2m", "--trial-deadline", "60s"]);
      const code = await update.exited(6 * 60_000);
      assert.notEqual(code, 0, update.output().slice(-4000));
      assert.match(update.output(), /did not come up: the unit fell back to v2/);
      assert.match(consoleText(), /v3 init: exiting at once/);
      // The fallback was the firmware's: one more boot by OVMF, from the disk.
      const boots = firmwareBoots(consoleText());
      assert.equal(boots.length, bootsBefore + 1, boots.join("\n"));
      assert.doesNotMatch(boots.at(-1) ?? "", /PXE/);
      assert.equal(lastSlotFromDisk(consoleText()), committedSlot);
      await waitForUnit(ns, unitAddress, { version: "v2", slot: committedSlot }, 60_000, () =>
        consoleText().slice(-4000),
      );
      console.log(
        `UEFI unit: v3 fell back to v2 by itself in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
    });
  },
);
