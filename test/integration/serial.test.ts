// The serial console on real ptys. First a fake firmware on one end of a
// socat pty pair replays the real SeaBIOS transcript in three parts, each
// only after it received the key that makes SeaBIOS print it (ESC, then the
// iPXE entry's digit), then prints a kernel panic. Then real SeaBIOS in QEMU,
// its serial port bridged to a pty by socat, once as itself (ESC) and once
// configured like apu2 (F10), must boot the iPXE entry our driver chose.
// QEMU's NIC uses user networking with restrict=on: nothing leaves QEMU.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { SerialPort } from "serialport";
import { isRtr7Error } from "../../lib/errors.js";
import { silentLogger } from "../../lib/log.js";
import { openConsole, type SerialConsole } from "../../server/serial/console.js";
import { repoPath } from "../helpers/paths.js";
import { haveTool, start, type Started } from "../helpers/processes.js";

async function tempDir(t: TestContext): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), "rtr7-serial-"));
  t.after(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

function startProcess(t: TestContext, command: string, args: string[]): Started {
  const started = start(command, args);
  t.after(() => started.stop());
  return started;
}

async function until(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Every line the console emitted, and a bounded wait for one. */
function recordLines(serial: SerialConsole): {
  lines: string[];
  waitFor: (pattern: RegExp, timeoutMs: number) => Promise<void>;
} {
  const lines: string[] = [];
  serial.on("line", (line) => lines.push(line));
  return {
    lines,
    waitFor: (pattern, timeoutMs) =>
      until(
        () => lines.some((line) => pattern.test(line)),
        `a console line matching ${String(pattern)}`,
        timeoutMs,
      ).catch((error: Error) => {
        throw new Error(`${error.message}; last lines:\n${lines.slice(-20).join("\n")}`);
      }),
  };
}

/** The fake firmware's end of the pty pair. */
async function openFirmwareEnd(
  t: TestContext,
  ttyPath: string,
): Promise<{ port: SerialPort; received: () => Buffer }> {
  const port = new SerialPort({ path: ttyPath, baudRate: 115200, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((error) => (error ? reject(error) : resolve())));
  t.after(() => new Promise<void>((resolve) => (port.isOpen ? port.close(() => resolve()) : resolve())));
  const chunks: Buffer[] = [];
  port.on("data", (chunk: Buffer) => chunks.push(chunk));
  return { port, received: () => Buffer.concat(chunks) };
}

function splitAfter(bytes: Buffer, marker: string): [Buffer, Buffer] {
  const at = bytes.indexOf(marker, 0, "latin1");
  assert.ok(at >= 0, `the transcript contains ${JSON.stringify(marker)}`);
  const end = at + marker.length;
  return [bytes.subarray(0, end), bytes.subarray(end)];
}

test("a fake SeaBIOS on a pty pair gets ESC, then the iPXE digit; a panic ends with RTR7_ERR_KERNEL_PANIC", async (t) => {
  if (!(await haveTool("socat"))) return t.skip("socat is not installed (apt-get install socat)");
  const directory = await tempDir(t);
  const unitEnd = path.join(directory, "unit");
  const hostEnd = path.join(directory, "host");
  const socat = startProcess(t, "socat", [
    "-d",
    "-d",
    `pty,raw,echo=0,link=${unitEnd}`,
    `pty,raw,echo=0,link=${hostEnd}`,
  ]);
  await socat.waitForLine(/starting data transfer loop/, 10_000);

  const firmware = await openFirmwareEnd(t, unitEnd);
  const logFile = path.join(directory, "console.log");
  const serial = await openConsole({ path: hostEnd, log: silentLogger(), logFile, bootMenu: "seabios" });
  t.after(() => serial.close());
  const { waitFor } = recordLines(serial);

  const transcript = await readFile(repoPath("test/fixtures/serial/seabios-menu.txt"));
  const [untilPrompt, afterPrompt] = splitAfter(transcript, "Press ESC for boot menu.\r\n");
  const [menu, afterMenu] = splitAfter(afterPrompt, "5. iPXE (PCI 00:03.0)\r\n");

  firmware.port.write(untilPrompt);
  await until(() => firmware.received().length >= 1, "the menu key", 5000);
  assert.deepEqual([...firmware.received()], [0x1b], "ESC, and nothing before it");
  firmware.port.write(menu);
  await until(() => firmware.received().length >= 2, "the entry key", 5000);
  assert.equal(firmware.received().toString("latin1"), "\x1b5");
  const choice = await serial.bootMenuChoice();
  assert.deepEqual(choice?.entry, { key: "5", label: "iPXE (PCI 00:03.0)" });

  firmware.port.write(afterMenu);
  await waitFor(/Booting from ROM\.\.\./, 5000);
  const panic = Buffer.from(
    "[    2.345678] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n",
  );
  const panicked = serial.kernelPanic();
  firmware.port.write(panic);
  await assert.rejects(panicked, (error: unknown) => {
    assert.ok(isRtr7Error(error, "RTR7_ERR_KERNEL_PANIC"));
    assert.match(error.message, /Kernel panic - not syncing: VFS: Unable to mount root fs/);
    return true;
  });

  await serial.close();
  assert.deepEqual(
    await readFile(logFile),
    Buffer.concat([transcript, panic]),
    "the log file holds the raw bytes",
  );
  assert.equal(firmware.received().toString("latin1"), "\x1b5", "nothing else was sent");
});

for (const bootMenu of ["seabios", "apu2"] as const) {
  test(
    `real SeaBIOS in QEMU (${bootMenu} menu key) boots the iPXE entry our driver chose`,
    { timeout: 60_000 },
    async (t) => {
      for (const tool of ["socat", "qemu-system-x86_64"]) {
        if (!(await haveTool(tool))) return t.skip(`${tool} is not installed (scripts/setup.sh installs it)`);
      }
      const directory = await tempDir(t);
      const tty = path.join(directory, "tty");
      const socket = path.join(directory, "qemu-serial.sock");
      const disk = path.join(directory, "blank.img");
      await writeFile(disk, Buffer.alloc(1024 * 1024));

      // socat first: the pty exists and the socket listens before QEMU runs, so
      // no byte SeaBIOS prints is lost before the console opens the pty.
      const socat = startProcess(t, "socat", [
        "-d",
        "-d",
        `PTY,link=${tty},raw,echo=0`,
        `UNIX-LISTEN:${socket}`,
      ]);
      await socat.waitForLine(/listening on/, 10_000);
      await until(() => existsSync(tty), "socat's pty", 5000);

      const logFile = path.join(directory, "console.log");
      const serial = await openConsole({
        path: tty,
        log: silentLogger(),
        logFile,
        bootMenu,
        bootMenuTimeouts: { promptMs: 30_000, menuMs: 15_000 },
      });
      t.after(() => serial.close());
      const { waitFor } = recordLines(serial);

      const qemuArgs = [
        "-m",
        "256",
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        `unix:${socket}`,
        "-boot",
        "menu=on,order=c,splash-time=5000",
        "-drive",
        `file=${disk},format=raw,if=ide`,
        "-netdev",
        "user,id=n0,restrict=on",
        "-device",
        "e1000,netdev=n0",
      ];
      if (bootMenu === "apu2") {
        // PC Engines' prompt and F10 (scan code 0x44) as the menu key, as apu2's firmware has them.
        const message = path.join(directory, "boot-menu-message");
        const key = path.join(directory, "boot-menu-key");
        await writeFile(message, "Press F10 key now for boot menu\n\n");
        await writeFile(key, Buffer.from([0x44, 0x00]));
        qemuArgs.push("-fw_cfg", `name=etc/boot-menu-message,file=${message}`);
        qemuArgs.push("-fw_cfg", `name=etc/boot-menu-key,file=${key}`);
      }
      const qemu = startProcess(t, "qemu-system-x86_64", qemuArgs);

      const choice = await serial.bootMenuChoice().catch((error: Error) => {
        throw new Error(`${error.message}\nQEMU: ${qemu.output()}`);
      });
      assert.match(choice?.entry.label ?? "", /^iPXE \(PCI 00:0\d\.0\)$/);
      assert.notEqual(choice?.entry.key, "1", "the disk comes first; the network entry is chosen anyway");
      await waitFor(/^Booting from ROM\.\.\.$/, 15_000);
      await waitFor(/^iPXE \(PCI 00:0\d\.0\) starting execution/, 15_000);
      await serial.close();
      const raw = await readFile(logFile, "latin1");
      assert.ok(raw.includes("Select boot device:"));
    },
  );
}
