// End to end with real firmware: a QEMU unit (software emulation) boots from
// the network through iPXE, gets our DHCP answer, loads pxelinux, the kernel
// and the smoke initramfs over our TFTP, and the initramfs reports success
// over HTTP with the run's session token; `rtr7 recover` exits 0. In the
// second case the disk comes first and hangs, so only our driving of the
// SeaBIOS boot menu over the serial console gets the unit to network boot.
import { test } from "node:test";
import assert from "node:assert/strict";
import { truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { namespacesFor, requireRootAndTools } from "../helpers/netns.js";
import { fakeImages, jsonEvents, recoverArgs, scratchDir } from "../helpers/scratch.js";
import { buildSmokeInitramfs, modulesDirFor } from "../../lab/smoke-initramfs.js";
import { hangingBootSector, qemuUnitArgs } from "../../lab/qemu.js";
import { newestKernel } from "../../lib/host-kernel.js";

const unitMac = "52:54:00:12:34:56";
const bootTimeoutMs = 360_000;

async function prepare(t: Parameters<typeof requireRootAndTools>[0], tools: string[]) {
  if (!(await requireRootAndTools(t, ["qemu-system-x86_64", "busybox", ...tools]))) return undefined;
  const work = await scratchDir(t, "qemu");
  const kernel = newestKernel();
  const initrd = await buildSmokeInitramfs({
    out: path.join(work, "initrd.gz"),
    modulesDir: modulesDirFor(kernel),
  });
  const images = await fakeImages(work);
  const [lab] = await namespacesFor(t, "qemu");
  if (!lab) throw new Error("no namespace");
  await lab.addTap("tap0", "10.77.0.254/24");
  const disk = path.join(work, "disk.img");
  await truncate(disk, 0).catch(() => undefined);
  await writeFile(disk, "");
  await truncate(disk, 64 * 1024 * 1024);
  const args = recoverArgs({
    interfaceName: "tap0",
    hostname: "qemu-unit",
    images,
    kernel,
    initrd,
    extra: [`--timeout=${bootTimeoutMs / 1000 - 30}s`, "--json"],
  });
  return { work, lab, disk, recoverArgs: args };
}

function checkSuccess(output: string): void {
  const events = jsonEvents(output);
  const success = events.find((event) => event.event === "success");
  assert.ok(success, `no success event:\n${output.slice(-4000)}`);
  assert.equal(success.unitMac, unitMac);
  assert.equal(success.unitAddress, "10.77.0.1");
  // The unit walked the whole chain: DHCP, every PXE file over TFTP, the
  // manifest and an image over HTTP, and a progress report on the way.
  assert.ok(
    events.some((event) => event.subsystem === "dhcp" && /ack/i.test(String(event.event))),
    "no DHCP ACK",
  );
  for (const name of ["pxelinux.0", "ldlinux.c32", "pxelinux.cfg/default", "vmlinuz", "initrd"]) {
    assert.ok(
      events.some(
        (event) => event.subsystem === "tftp" && event.file === name && event.event === "tftp-sent",
      ),
      `${name} was not sent over TFTP`,
    );
  }
  assert.ok(
    events.some((event) => event.subsystem === "http" && event.file === "mbr.img"),
    "mbr.img not fetched",
  );
  assert.ok(
    events.some((event) => event.event === "progress" && event.step === "dhcp"),
    "no progress report",
  );
}

test(
  "a network-only QEMU unit is recovered through iPXE, pxelinux and our DHCP, TFTP and HTTP",
  { timeout: bootTimeoutMs },
  async (t) => {
    const setup = await prepare(t, []);
    if (!setup) return;
    const recover = setup.lab.start(process.execPath, setup.recoverArgs);
    await recover.waitForLine(/"event":"start"/, 60_000);
    const qemu = setup.lab.start(
      "qemu-system-x86_64",
      qemuUnitArgs({ tap: "tap0", mac: unitMac, boot: "network", disk: setup.disk }),
    );
    t.after(() => qemu.stop());
    const code = await recover.exited(bootTimeoutMs - 60_000);
    assert.equal(
      code,
      0,
      `rtr7 recover failed:\n${recover.output().slice(-4000)}\n--- unit console:\n${qemu.output().slice(-3000)}`,
    );
    checkSuccess(recover.output());
    assert.match(qemu.output(), /rtr7-smoke: reported success/);
  },
);

test(
  "with the disk first, the SeaBIOS boot menu driven over the serial console picks network boot",
  { timeout: bootTimeoutMs },
  async (t) => {
    const setup = await prepare(t, ["socat"]);
    if (!setup) return;
    await writeFile(setup.disk, hangingBootSector());
    await truncate(setup.disk, 64 * 1024 * 1024);
    const tty = path.join(setup.work, "ttyUnit");
    const socket = path.join(setup.work, "serial.sock");
    // socat makes the pty first, then waits for QEMU on the socket, so rtr7
    // has the console open before the firmware prints its first line.
    const bridge = setup.lab.start("socat", [
      "-d",
      "-d",
      `PTY,link=${tty},raw,echo=0`,
      `UNIX-LISTEN:${socket}`,
    ]);
    await bridge.waitForLine(/listening on/, 10_000);
    const recover = setup.lab.start(process.execPath, [
      ...setup.recoverArgs,
      `--serial=${tty}`,
      "--boot-menu=seabios",
      `--serial-log=${path.join(setup.work, "console.log")}`,
    ]);
    await recover.waitForLine(/"event":"start"/, 60_000);
    await recover.waitForLine(/"subsystem":"serial"/, 30_000);
    const qemu = setup.lab.start(
      "qemu-system-x86_64",
      qemuUnitArgs({ tap: "tap0", mac: unitMac, boot: "menu", disk: setup.disk, serialSocket: socket }),
    );
    t.after(() => qemu.stop());
    const code = await recover.exited(bootTimeoutMs - 60_000);
    assert.equal(code, 0, `rtr7 recover failed:\n${recover.output().slice(-4000)}`);
    checkSuccess(recover.output());
    const events = jsonEvents(recover.output());
    const serial = events.filter((event) => event.subsystem === "serial");
    const menu = serial.filter((event) => event.event === "boot-menu").map((event) => String(event.msg));
    assert.ok(
      menu.some((message) => /pressing/.test(message)),
      `no menu key pressed: ${menu.join("; ")}`,
    );
    assert.ok(
      menu.some((message) => /choosing .*iPXE/.test(message)),
      `no network entry chosen: ${menu.join("; ")}`,
    );
    assert.ok(
      serial.some(
        (event) => event.event === "console" && /rtr7-smoke: recovery server/.test(String(event.msg)),
      ),
      `the unit's console lines were not shown:\n${serial
        .map((event) => String(event.msg))
        .slice(-20)
        .join("\n")}`,
    );
  },
);
