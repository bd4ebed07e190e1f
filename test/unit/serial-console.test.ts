// The serial console on serialport's mock binding: lines logged as
// `[serial] <path> <line>`, raw bytes in the log file, kernel panics, the
// boot menu driven through the port, and open failures.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { SerialPortMock } from "serialport";
import { isRtr7Error } from "../../lib/errors.js";
import { createLogger, silentLogger } from "../../lib/log.js";
import { openConsole, type SerialPortFactory } from "../../server/serial/console.js";

let nextPort = 0;

/** A mock serial device the console can open, and the port object it opened. */
function mockDevice(): {
  path: string;
  factory: SerialPortFactory;
  emit(data: string | Buffer): void;
  sent(): Buffer;
} {
  const devicePath = `/dev/ttyMOCK${nextPort++}`;
  SerialPortMock.binding.createPort(devicePath, { echo: false, record: true });
  let port: SerialPortMock | undefined;
  const binding = () => {
    if (!port?.port) throw new Error("the console has not opened the mock port");
    return port.port;
  };
  return {
    path: devicePath,
    factory: ({ path: portPath, baudRate }) =>
      (port = new SerialPortMock({ path: portPath, baudRate, autoOpen: false })),
    emit: (data) => binding().emitData(data),
    sent: () => binding().recording,
  };
}

function humanLogger(): { log: ReturnType<typeof createLogger>; output: string[] } {
  const output: string[] = [];
  return { log: createLogger({ stream: { write: (line: string) => output.push(line.trimEnd()) } }), output };
}

async function until(condition: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test("each line is emitted clean, logged as [serial] <path> <line>, and the log file gets the raw bytes", async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), "rtr7-console-"));
  t.after(() => rm(directory, { recursive: true, force: true }));
  const logFile = path.join(directory, "console.log");
  const device = mockDevice();
  const { log, output } = humanLogger();
  const serial = await openConsole({ path: device.path, log, logFile, portFactory: device.factory });
  const lines: string[] = [];
  serial.on("line", (line) => lines.push(line));

  const raw = Buffer.from(
    "\x1bc\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\n\r\niPXE \x1b[0;1m1.0\x1b[0m\rlast",
    "latin1",
  );
  device.emit(raw.subarray(0, 10));
  device.emit(raw.subarray(10));
  await until(() => lines.length === 3, "three lines");
  await serial.close();

  // The line still open when the console closes ("last") is flushed then.
  assert.deepEqual(lines, ["SeaBIOS (version 1.16.2)", "", "iPXE 1.0", "last"]);
  const consoleLines = output.filter((line) => line.includes("[serial]") && !line.includes("watching"));
  assert.match(
    consoleLines[0] ?? "",
    new RegExp(`^\\d\\d:\\d\\d:\\d\\d \\[serial\\] ${device.path} SeaBIOS \\(version 1\\.16\\.2\\)$`),
  );
  assert.ok(consoleLines.some((line) => line.endsWith(`[serial] ${device.path} iPXE 1.0`)));
  assert.ok(!consoleLines.some((line) => line.includes("\x1b")), "no escape sequences in the log");
  assert.deepEqual(await readFile(logFile), raw);
});

test("a kernel panic line rejects kernelPanic() with RTR7_ERR_KERNEL_PANIC and the line", async () => {
  const device = mockDevice();
  const serial = await openConsole({ path: device.path, log: silentLogger(), portFactory: device.factory });
  const panics: unknown[] = [];
  serial.on("panic", (error) => panics.push(error));
  const panicked = serial.kernelPanic();
  device.emit(
    "[    1.234567] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n",
  );
  await assert.rejects(panicked, (error: unknown) => {
    assert.ok(isRtr7Error(error, "RTR7_ERR_KERNEL_PANIC"));
    assert.match(error.message, /Kernel panic - not syncing: VFS: Unable to mount root fs/);
    assert.match(error.message, new RegExp(device.path));
    return true;
  });
  assert.equal(panics.length, 1);
  await assert.rejects(serial.kernelPanic(), (error: unknown) => isRtr7Error(error, "RTR7_ERR_KERNEL_PANIC"));
  await serial.close();
});

test("with bootMenu seabios the console presses ESC, then the iPXE entry's digit", async () => {
  const device = mockDevice();
  const serial = await openConsole({
    path: device.path,
    log: silentLogger(),
    bootMenu: "seabios",
    portFactory: device.factory,
  });
  device.emit("SeaBIOS (version 1.16.2)\r\n\r\nPress ESC for boot menu.\r\n\r\n");
  await until(() => device.sent().length === 1, "ESC");
  device.emit("Select boot device:\r\n\r\n1. ata0-0: QEMU HARDDISK\r\n2. iPXE (PCI 00:03.0)\r\n");
  const choice = await serial.bootMenuChoice();
  assert.equal(choice?.entry.key, "2");
  assert.equal(device.sent().toString("latin1"), "\x1b2");
  await serial.close();
});

test("a device that cannot be opened gives RTR7_ERR_SERIAL_OPEN with the path and the cause", async () => {
  const devicePath = "/dev/ttyMOCK-missing";
  await assert.rejects(
    openConsole({
      path: devicePath,
      log: silentLogger(),
      portFactory: ({ path: portPath, baudRate }) =>
        new SerialPortMock({ path: portPath, baudRate, autoOpen: false }),
    }),
    (error: unknown) => {
      assert.ok(isRtr7Error(error, "RTR7_ERR_SERIAL_OPEN"));
      assert.match(error.message, /\/dev\/ttyMOCK-missing at 115200 baud/);
      assert.ok(error.cause instanceof Error);
      return true;
    },
  );
});

test("a log file that cannot be created gives RTR7_ERR_SERIAL_OPEN before the port is opened", async () => {
  const device = mockDevice();
  let created = false;
  await assert.rejects(
    openConsole({
      path: device.path,
      log: silentLogger(),
      logFile: "/nonexistent-rtr7-directory/console.log",
      portFactory: (options) => {
        created = true;
        return device.factory(options);
      },
    }),
    (error: unknown) => isRtr7Error(error, "RTR7_ERR_SERIAL_OPEN") && /console\.log/.test(error.message),
  );
  assert.equal(created, false);
});
