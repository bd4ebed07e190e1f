// The Teensy rebootor driver against a fake HID transport: the exact report
// written to the right device, every way choosing or using a rebootor can go
// wrong, and the device closed whatever happens.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isRtr7Error } from "../../lib/errors.js";
import { createLogger } from "../../lib/log.js";
import {
  listRebootors,
  resetUnit,
  type HidDevice,
  type HidDeviceInfo,
  type HidTransport,
} from "../../server/rebootor.js";

interface FakeHid extends HidTransport {
  opened: string[];
  writes: { path: string; bytes: number[] }[];
  closed: string[];
}

function fakeHid(
  devices: HidDeviceInfo[],
  behaviour: { openError?: Error; writeResult?: number; writeError?: Error } = {},
): FakeHid {
  const fake: FakeHid = {
    opened: [],
    writes: [],
    closed: [],
    devices: () => devices,
    open(path: string): HidDevice {
      if (behaviour.openError) throw behaviour.openError;
      fake.opened.push(path);
      return {
        write(bytes) {
          fake.writes.push({ path, bytes: [...bytes] });
          if (behaviour.writeError) throw behaviour.writeError;
          return behaviour.writeResult ?? bytes.length;
        },
        close() {
          fake.closed.push(path);
        },
      };
    },
  };
  return fake;
}

function rebootor(path: string, serialNumber?: string): HidDeviceInfo {
  return {
    path,
    vendorId: 0x16c0,
    productId: 0x0477,
    product: "Rebootor",
    ...(serialNumber ? { serialNumber } : {}),
  };
}

const keyboard: HidDeviceInfo = {
  path: "/dev/hidraw0",
  vendorId: 0x046d,
  productId: 0xc31c,
  serialNumber: "kbd",
};

function capturingLogger(): { log: ReturnType<typeof createLogger>; records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  const log = createLogger({
    json: true,
    level: "debug",
    stream: { write: (line: string) => records.push(JSON.parse(line) as Record<string, unknown>) },
  });
  return { log, records };
}

test("a reset writes report ID 0 then 'reboot' to the rebootor, and closes it", async () => {
  const hid = fakeHid([keyboard, rebootor("/dev/hidraw3", "1234")]);
  const { log, records } = capturingLogger();
  const outcome = await resetUnit({ transport: hid, log });
  assert.deepEqual(outcome, { outcome: "reset", path: "/dev/hidraw3", serialNumber: "1234" });
  assert.deepEqual(hid.writes, [{ path: "/dev/hidraw3", bytes: [0x00, 0x72, 0x65, 0x62, 0x6f, 0x6f, 0x74] }]);
  assert.deepEqual(hid.opened, ["/dev/hidraw3"]);
  assert.deepEqual(hid.closed, ["/dev/hidraw3"]);
  const reset = records.find((record) => record.event === "reset");
  assert.equal(reset?.subsystem, "rebootor");
  assert.equal(reset?.peer, "/dev/hidraw3");
});

test("no rebootor attached is not an error: one line asks for a reset by hand", async () => {
  const hid = fakeHid([keyboard]);
  const { log, records } = capturingLogger();
  const outcome = await resetUnit({ transport: hid, log });
  assert.deepEqual(outcome, { outcome: "no-rebootor" });
  assert.deepEqual(hid.opened, []);
  const asked = records.filter((record) => record.event === "no-rebootor");
  assert.equal(asked.length, 1);
  assert.match(String(asked[0]?.msg), /reset the unit by hand/);
  assert.equal(asked[0]?.subsystem, "rebootor");
});

test("a rebootor that cannot be opened gives RTR7_ERR_REBOOTOR_OPEN with the udev rule", async () => {
  const hid = fakeHid([rebootor("/dev/hidraw3", "1234")], {
    openError: new Error("cannot open device with path /dev/hidraw3"),
  });
  const { log } = capturingLogger();
  await assert.rejects(resetUnit({ transport: hid, log }), (error: unknown) => {
    assert.ok(isRtr7Error(error, "RTR7_ERR_REBOOTOR_OPEN"));
    assert.match(error.message, /\/dev\/hidraw3/);
    assert.match(error.message, /cannot open device/);
    assert.match(error.hint, /SUBSYSTEM=="hidraw", ATTRS\{idVendor\}=="16c0", ATTRS\{idProduct\}=="0477"/);
    return true;
  });
  assert.deepEqual(hid.writes, []);
});

test("several rebootors and no --rebootor: ambiguous, listing each serial and path", async () => {
  const hid = fakeHid([rebootor("/dev/hidraw3", "1234"), rebootor("/dev/hidraw5", "5678")]);
  const { log } = capturingLogger();
  await assert.rejects(resetUnit({ transport: hid, log }), (error: unknown) => {
    assert.ok(isRtr7Error(error, "RTR7_ERR_REBOOTOR_AMBIGUOUS"));
    for (const part of ["1234", "/dev/hidraw3", "5678", "/dev/hidraw5"])
      assert.ok(error.message.includes(part));
    return true;
  });
  assert.deepEqual(hid.opened, []);
});

test("--rebootor chooses among several by serial number or by path", async () => {
  const attached = [rebootor("/dev/hidraw3", "1234"), rebootor("/dev/hidraw5", "5678")];
  const { log } = capturingLogger();

  const bySerial = fakeHid(attached);
  assert.deepEqual(await resetUnit({ rebootor: "5678", transport: bySerial, log }), {
    outcome: "reset",
    path: "/dev/hidraw5",
    serialNumber: "5678",
  });
  assert.deepEqual(
    bySerial.writes.map((write) => write.path),
    ["/dev/hidraw5"],
  );

  const byPath = fakeHid(attached);
  await resetUnit({ rebootor: "/dev/hidraw3", transport: byPath, log });
  assert.deepEqual(
    byPath.writes.map((write) => write.path),
    ["/dev/hidraw3"],
  );
  assert.deepEqual(byPath.closed, ["/dev/hidraw3"]);
});

test("--rebootor that matches none gives RTR7_ERR_REBOOTOR_NOT_FOUND, also when none is attached", async () => {
  const { log } = capturingLogger();
  for (const attached of [[rebootor("/dev/hidraw3", "1234")], []]) {
    const hid = fakeHid(attached);
    await assert.rejects(resetUnit({ rebootor: "9999", transport: hid, log }), (error: unknown) => {
      assert.ok(isRtr7Error(error, "RTR7_ERR_REBOOTOR_NOT_FOUND"));
      assert.match(error.message, /9999/);
      return true;
    });
    assert.deepEqual(hid.opened, []);
  }
});

test("a short write or a failing write gives RTR7_ERR_REBOOTOR_WRITE, and the device is still closed", async () => {
  const { log } = capturingLogger();
  const short = fakeHid([rebootor("/dev/hidraw3", "1234")], { writeResult: 3 });
  await assert.rejects(resetUnit({ transport: short, log }), (error: unknown) => {
    assert.ok(isRtr7Error(error, "RTR7_ERR_REBOOTOR_WRITE"));
    assert.match(error.message, /wrote 3 bytes, want 7/);
    return true;
  });
  assert.deepEqual(short.closed, ["/dev/hidraw3"]);

  const cause = new Error("Cannot write to hid device");
  const failing = fakeHid([rebootor("/dev/hidraw3", "1234")], { writeError: cause });
  await assert.rejects(resetUnit({ transport: failing, log }), (error: unknown) => {
    assert.ok(isRtr7Error(error, "RTR7_ERR_REBOOTOR_WRITE"));
    assert.equal(error.cause, cause);
    return true;
  });
  assert.deepEqual(failing.closed, ["/dev/hidraw3"]);
});

test("listRebootors keeps only 16c0:0477 devices with a path, each path once", async () => {
  const hid = fakeHid([
    keyboard,
    rebootor("/dev/hidraw3", "1234"),
    rebootor("/dev/hidraw3", "1234"),
    rebootor("/dev/hidraw4"),
  ]);
  assert.deepEqual(await listRebootors({ transport: hid }), [
    { path: "/dev/hidraw3", serialNumber: "1234", product: "Rebootor" },
    { path: "/dev/hidraw4", product: "Rebootor" },
  ]);
});
