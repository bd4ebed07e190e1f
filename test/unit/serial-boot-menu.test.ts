// The boot-menu reading on transcripts: a real one from QEMU's SeaBIOS, a
// real one from SeaBIOS configured like apu2, a hand-written apu2 one; the
// same transcripts cut into chunks of every size and sprinkled with ANSI
// noise; and the driver's time limits against a fake console.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import { isRtr7Error } from "../../lib/errors.js";
import { silentLogger } from "../../lib/log.js";
import {
  BootMenuScanner,
  bootMenuFirmware,
  driveBootMenu,
  type BootMenuAction,
  type BootMenuConsole,
  type BootMenuFirmwareName,
} from "../../server/serial/boot-menu.js";
import { LineAssembler, cleanLine } from "../../server/serial/lines.js";
import { repoPath } from "../helpers/paths.js";

function fixture(name: string): Buffer {
  return readFileSync(repoPath(`test/fixtures/serial/${name}`));
}

/** Feeds bytes to a scanner the way SerialConsole does, in chunks of the given sizes (cycled). */
function replay(
  bytes: Buffer,
  firmware: BootMenuFirmwareName,
  chunkSizes: number[] = [bytes.length],
): BootMenuAction[] {
  const scanner = new BootMenuScanner(bootMenuFirmware[firmware]);
  const decoder = new StringDecoder("utf8");
  const lines = new LineAssembler();
  const actions: BootMenuAction[] = [];
  const feed = (line: string, complete: boolean): void => {
    const action = scanner.feed(line, complete);
    if (action) actions.push(action);
  };
  let offset = 0;
  for (let index = 0; offset < bytes.length; index++) {
    const size = chunkSizes[index % chunkSizes.length] ?? 1;
    const text = decoder.write(bytes.subarray(offset, offset + size));
    offset += size;
    for (const raw of lines.push(text)) feed(cleanLine(raw), true);
    if (lines.pending !== "") feed(cleanLine(lines.pending), false);
  }
  return actions;
}

function keysPressed(actions: BootMenuAction[]): string[] {
  return actions.map((action) =>
    action.action === "press-menu-key" ? action.key : action.action === "choose" ? action.entry.key : "!",
  );
}

test("real SeaBIOS transcript: ESC at the prompt, then 5 for the iPXE entry", () => {
  const actions = replay(fixture("seabios-menu.txt"), "seabios");
  assert.deepEqual(keysPressed(actions), ["\x1b", "5"]);
  const choice = actions[1];
  assert.equal(choice?.action, "choose");
  if (choice?.action !== "choose") return;
  assert.deepEqual(choice.entry, { key: "5", label: "iPXE (PCI 00:03.0)" });
  assert.deepEqual(
    choice.entries.map((entry) => `${entry.key}. ${entry.label}`),
    [
      "1. ata0-0: QEMU HARDDISK ATA-7 Hard-Disk (16 MiBytes)",
      "2. Legacy option rom",
      "3. Floppy [drive A]",
      "4. DVD/CD [ata1-0: QEMU DVD-ROM ATAPI-4 DVD/CD]",
      "5. iPXE (PCI 00:03.0)",
    ],
  );
});

test("real SeaBIOS with apu2's prompt and key: F10 as ESC [ 2 1 ~, then 5", () => {
  assert.deepEqual(keysPressed(replay(fixture("seabios-f10-menu.txt"), "apu2")), ["\x1b[21~", "5"]);
});

test("apu2 transcript: F10 at 'Press F10 key now for boot menu, N for PXE boot', then 3 for iPXE", () => {
  const actions = replay(fixture("apu2-menu.txt"), "apu2");
  assert.deepEqual(keysPressed(actions), ["\x1b[21~", "3"]);
  const choice = actions[1];
  assert.ok(choice?.action === "choose" && choice.entry.label === "iPXE");
});

test("the wrong firmware kind never presses the menu key", () => {
  const menuKeys = (actions: BootMenuAction[]): BootMenuAction[] =>
    actions.filter((action) => action.action === "press-menu-key");
  assert.deepEqual(menuKeys(replay(fixture("apu2-menu.txt"), "seabios")), []);
  assert.deepEqual(menuKeys(replay(fixture("seabios-menu.txt"), "apu2")), []);
});

test("the same keys whatever the chunk sizes, down to one byte", () => {
  for (const name of ["seabios-menu.txt", "seabios-f10-menu.txt", "apu2-menu.txt"]) {
    const firmware = name.startsWith("apu2") || name.includes("f10") ? "apu2" : "seabios";
    const whole = keysPressed(replay(fixture(name), firmware));
    for (const sizes of [[1], [2], [3], [7], [5, 1, 13, 2], [64]]) {
      assert.deepEqual(
        keysPressed(replay(fixture(name), firmware, sizes)),
        whole,
        `${name} in chunks of ${sizes.join(",")}`,
      );
    }
  }
});

test("ANSI noise inside the prompt and the entries, split across chunks", () => {
  const noisy = Buffer.from(
    "\x1b[2J\x1b[1;1H\x1b[0mPress \x1b[1mESC\x1b[0m for boot menu.\r\n\r\n" +
      "\x1b[0;37mSelect boot device:\x1b[0m\r\n\r\n" +
      "\x1b[1m1\x1b[0m. ata0-0: QEMU HARDDISK\r\n" +
      "\x1b[1m2\x1b[0m. \x1b[32mNetwork\x1b[0m boot\r\n",
    "latin1",
  );
  for (const sizes of [[noisy.length], [1], [3], [4, 9]]) {
    const actions = replay(noisy, "seabios", sizes);
    assert.deepEqual(keysPressed(actions), ["\x1b", "2"], `chunks of ${sizes.join(",")}`);
    const choice = actions[1];
    assert.ok(choice?.action === "choose" && choice.entry.label === "Network boot");
  }
});

test("entries past 9 use letters; the key is the character printed", () => {
  const menu = ["Press ESC for boot menu.", "", "Select boot device:", ""];
  for (let index = 1; index <= 9; index++) menu.push(`${index}. ata${index}: QEMU HARDDISK`);
  menu.push("a. iPXE (PCI 00:08.0)", "");
  assert.deepEqual(keysPressed(replay(Buffer.from(menu.join("\r\n")), "seabios")), ["\x1b", "a"]);
});

test("a menu without a network entry is reported with its entries", () => {
  const transcript = [
    "Press ESC for boot menu.",
    "Select boot device:",
    "",
    "1. ata0-0: QEMU HARDDISK",
    "2. Payload [setup]",
    "",
    "Booting from Hard Disk...",
    "",
  ].join("\r\n");
  const actions = replay(Buffer.from(transcript), "seabios");
  assert.equal(actions.length, 2);
  const last = actions[1];
  assert.equal(last?.action, "no-network-entry");
  assert.deepEqual(last?.action === "no-network-entry" ? last.entries.map((entry) => entry.key) : [], [
    "1",
    "2",
  ]);
});

test("a prompt that waits before its newline is answered once", () => {
  const scanner = new BootMenuScanner(bootMenuFirmware.apu2);
  assert.equal(scanner.feed("Press F10 key", false), undefined);
  assert.equal(scanner.feed("Press F10 key now for boot menu", false)?.action, "press-menu-key");
  assert.equal(scanner.feed("Press F10 key now for boot menu:", false), undefined);
  assert.equal(scanner.feed("Press F10 key now for boot menu:", true), undefined);
  // The unit booted again without showing the menu: press again at the next prompt.
  assert.equal(scanner.feed("Press F10 key now for boot menu:", true)?.action, "press-menu-key");
});

test("what counts as a network entry", () => {
  const network = bootMenuFirmware.seabios.networkEntry;
  for (const label of [
    "iPXE (PCI 00:03.0)",
    "iPXE",
    "Realtek PXE B02 D00",
    "UEFI PXEv4 (MAC:525400123456)",
    "Network boot",
  ]) {
    assert.ok(network.test(label), label);
  }
  for (const label of [
    "ata0-0: QEMU HARDDISK",
    "Payload [setup]",
    "Payload [memtest]",
    "USB MSC Drive Kingston",
    "Legacy option rom",
  ]) {
    assert.ok(!network.test(label), label);
  }
});

/** A console fed by the test, recording what the driver sends. */
function fakeConsole(): BootMenuConsole & { show(text: string): void; sent: string[] } {
  const listeners = new Set<(line: string, complete: boolean) => void>();
  const lines = new LineAssembler();
  const sent: string[] = [];
  return {
    path: "/dev/ttyFAKE0",
    sent,
    watchText(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    write(data) {
      sent.push(data);
      return Promise.resolve();
    },
    show(text) {
      for (const raw of lines.push(text))
        for (const listener of [...listeners]) listener(cleanLine(raw), true);
      if (lines.pending !== "")
        for (const listener of [...listeners]) listener(cleanLine(lines.pending), false);
    },
  };
}

test("driveBootMenu sends the menu key, then the entry's key, and resolves with the choice", async () => {
  const serial = fakeConsole();
  const running = driveBootMenu(serial, { firmware: "seabios", log: silentLogger() });
  serial.show(fixture("seabios-menu.txt").toString("latin1"));
  const choice = await running;
  assert.deepEqual(serial.sent, ["\x1b", "5"]);
  assert.deepEqual(choice.entry, { key: "5", label: "iPXE (PCI 00:03.0)" });
  assert.equal(choice.firmware, "seabios");
});

test("driveBootMenu gives RTR7_ERR_BOOT_MENU when the prompt does not show in time", async () => {
  const serial = fakeConsole();
  const running = driveBootMenu(serial, {
    firmware: "apu2",
    log: silentLogger(),
    timeouts: { promptMs: 50 },
  });
  serial.show("PC Engines apu2\r\nSeaBIOS (version rel-1.12.1.3)\r\n");
  await assert.rejects(running, (error: unknown) => {
    assert.ok(isRtr7Error(error, "RTR7_ERR_BOOT_MENU"));
    assert.match(error.message, /\/dev\/ttyFAKE0/);
    assert.match(error.message, /no "Press F10 key now for boot menu" prompt within 50 ms/);
    return true;
  });
  assert.deepEqual(serial.sent, []);
});

test("driveBootMenu gives RTR7_ERR_BOOT_MENU when the menu shows no network entry in time", async () => {
  const serial = fakeConsole();
  const running = driveBootMenu(serial, {
    firmware: "seabios",
    log: silentLogger(),
    timeouts: { menuMs: 50 },
  });
  serial.show("Press ESC for boot menu.\r\n\r\nSelect boot device:\r\n\r\n1. ata0-0: QEMU HARDDISK\r\n");
  await assert.rejects(running, (error: unknown) => {
    assert.ok(isRtr7Error(error, "RTR7_ERR_BOOT_MENU"));
    assert.match(error.message, /no network \(iPXE\/PXE\) entry/);
    assert.match(error.message, /1\. ata0-0: QEMU HARDDISK/);
    return true;
  });
  assert.deepEqual(serial.sent, ["\x1b"]);
});

test("driveBootMenu stops with RTR7_ERR_BOOT_MENU when its signal aborts", async () => {
  const serial = fakeConsole();
  const controller = new AbortController();
  const running = driveBootMenu(serial, {
    firmware: "seabios",
    log: silentLogger(),
    signal: controller.signal,
  });
  controller.abort();
  await assert.rejects(running, (error: unknown) => isRtr7Error(error, "RTR7_ERR_BOOT_MENU"));
});
