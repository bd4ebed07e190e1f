// Choosing the target disk from fake /sys/block trees: one disk, a disk among
// a USB stick, a loop device and an optical drive, two disks (ambiguous), none,
// and a disk named with rtr7.disk= (fine, too small, missing, a partition).
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { isRtr7Error, type ErrorCode } from "../../lib/errors.js";
import { chooseDisk } from "../../recovery-init/disk/choose.js";
import { minimumDiskBytes } from "../../lib/wire/disk-layout.js";
import { scratchDir } from "../helpers/scratch.js";

const GiB = 1024 ** 3;
const minimumBytes = minimumDiskBytes();

interface FakeDevice {
  bytes: number;
  removable?: boolean;
  readOnly?: boolean;
  /** Has the `device` link real hardware gets; default true. */
  hardware?: boolean;
  logicalBlockSize?: number;
  partitions?: string[];
}

/** A /sys/block with the given devices; `device` links point into a fake /sys/devices. */
async function fakeSysBlock(t: TestContext, devices: Record<string, FakeDevice>): Promise<string> {
  const sys = await scratchDir(t, "sys");
  const sysBlock = path.join(sys, "block");
  await mkdir(sysBlock);
  for (const [name, device] of Object.entries(devices)) {
    const dir = path.join(sysBlock, name);
    await mkdir(path.join(dir, "queue"), { recursive: true });
    await writeFile(path.join(dir, "size"), `${device.bytes / 512}\n`);
    await writeFile(path.join(dir, "removable"), device.removable ? "1\n" : "0\n");
    await writeFile(path.join(dir, "ro"), device.readOnly ? "1\n" : "0\n");
    if (device.logicalBlockSize !== undefined)
      await writeFile(path.join(dir, "queue", "logical_block_size"), `${device.logicalBlockSize}\n`);
    if (device.hardware ?? true) {
      const hardware = path.join(sys, "devices", name);
      await mkdir(hardware, { recursive: true });
      await symlink(hardware, path.join(dir, "device"));
    }
    for (const partition of device.partitions ?? []) {
      await mkdir(path.join(dir, partition));
      await writeFile(path.join(dir, partition, "partition"), "1\n");
    }
  }
  return sysBlock;
}

function rejectsWith(code: ErrorCode, ...mentions: (string | RegExp)[]) {
  return (error: unknown): boolean => {
    assert.ok(isRtr7Error(error, code), `want ${code}, got ${String(error)}`);
    for (const mention of mentions) assert.match(error.message + "\n" + error.hint, new RegExp(mention));
    return true;
  };
}

test("the only disk is chosen", async (t) => {
  const sysBlock = await fakeSysBlock(t, { sda: { bytes: 16 * GiB, partitions: ["sda1"] } });
  assert.deepEqual(await chooseDisk({ sysBlock, minimumBytes }), {
    device: "/dev/sda",
    bytes: 16 * GiB,
    sectorSize: 512,
  });
});

test("the disk is chosen over a USB stick, a loop device, an optical drive and zram", async (t) => {
  const sysBlock = await fakeSysBlock(t, {
    loop0: { bytes: 8 * GiB, hardware: false },
    nvme0n1: { bytes: 256 * GiB, logicalBlockSize: 4096 },
    sdb: { bytes: 32 * GiB, removable: true },
    sr0: { bytes: 700 * 1024 * 1024, removable: true, readOnly: true },
    zram0: { bytes: 1 * GiB, hardware: false },
  });
  assert.deepEqual(await chooseDisk({ sysBlock, minimumBytes }), {
    device: "/dev/nvme0n1",
    bytes: 256 * GiB,
    sectorSize: 4096,
  });
});

test("two disks are ambiguous: the message names both with sizes, the hint --disk", async (t) => {
  const sysBlock = await fakeSysBlock(t, { sda: { bytes: 16 * GiB }, vdb: { bytes: 4 * GiB } });
  await assert.rejects(
    chooseDisk({ sysBlock, minimumBytes }),
    rejectsWith("RTR7_ERR_DISK_AMBIGUOUS", /sda 16\.00 GiB/, /vdb 4\.00 GiB/, /--disk sda or --disk vdb/),
  );
});

test("no usable disk: the message lists every device and why it was skipped", async (t) => {
  const sysBlock = await fakeSysBlock(t, {
    dm0: { bytes: 4 * GiB, hardware: false },
    "dm-0": { bytes: 4 * GiB, hardware: false },
    loop0: { bytes: 8 * GiB, hardware: false },
    mmcblk0: { bytes: 8 * GiB, readOnly: true },
    sda: { bytes: 0 },
    sdb: { bytes: 32 * GiB, removable: true },
    sr0: { bytes: 700 * 1024 * 1024 },
  });
  await assert.rejects(
    chooseDisk({ sysBlock, minimumBytes }),
    rejectsWith(
      "RTR7_ERR_DISK_NONE",
      /dm0 \(virtual device, no device link\)/,
      /dm-0 \(device-mapper device\)/,
      /loop0 \(loop device\)/,
      /mmcblk0 \(read-only\)/,
      /sda \(no medium\)/,
      /sdb \(removable: USB stick or card reader\)/,
      /sr0 \(optical drive\)/,
    ),
  );
  const empty = await fakeSysBlock(t, {});
  await assert.rejects(
    chooseDisk({ sysBlock: empty, minimumBytes }),
    rejectsWith("RTR7_ERR_DISK_NONE", /seen: nothing/),
  );
  await assert.rejects(
    chooseDisk({ sysBlock: path.join(empty, "missing"), minimumBytes }),
    rejectsWith("RTR7_ERR_DISK_NONE", /cannot list/, /mount -t sysfs/),
  );
});

test("only a disk below the minimum: too small, naming its size and the size needed", async (t) => {
  const sysBlock = await fakeSysBlock(t, { sda: { bytes: 1 * GiB } });
  await assert.rejects(
    chooseDisk({ sysBlock, minimumBytes }),
    rejectsWith("RTR7_ERR_DISK_TOO_SMALL", /sda \(too small: 1\.00 GiB/, new RegExp(`${minimumBytes} bytes`)),
  );
});

test("rtr7.disk= picks a disk among several, even a removable one; /dev/ is optional", async (t) => {
  const sysBlock = await fakeSysBlock(t, {
    sda: { bytes: 16 * GiB },
    sdb: { bytes: 32 * GiB, removable: true },
  });
  assert.equal((await chooseDisk({ sysBlock, explicit: "sda", minimumBytes })).device, "/dev/sda");
  assert.deepEqual(await chooseDisk({ sysBlock, explicit: "/dev/sdb", minimumBytes }), {
    device: "/dev/sdb",
    bytes: 32 * GiB,
    sectorSize: 512,
  });
});

test("rtr7.disk= naming a disk that is too small fails with both sizes", async (t) => {
  const sysBlock = await fakeSysBlock(t, { sda: { bytes: 1 * GiB }, sdb: { bytes: 16 * GiB } });
  await assert.rejects(
    chooseDisk({ sysBlock, explicit: "sda", minimumBytes }),
    rejectsWith(
      "RTR7_ERR_DISK_TOO_SMALL",
      /rtr7\.disk=sda/,
      /1073741824 bytes/,
      new RegExp(`${minimumBytes} bytes`),
    ),
  );
});

test("rtr7.disk= naming a missing disk, a partition, a read-only disk or a path fails", async (t) => {
  const sysBlock = await fakeSysBlock(t, {
    sda: { bytes: 16 * GiB, partitions: ["sda1"] },
    sdb: { bytes: 16 * GiB, readOnly: true },
  });
  const choose = (explicit: string): Promise<unknown> => chooseDisk({ sysBlock, explicit, minimumBytes });
  await assert.rejects(
    choose("nvme0n1"),
    rejectsWith("RTR7_ERR_DISK_NOT_FOUND", /nvme0n1/, /present: sda, sdb/),
  );
  await assert.rejects(
    choose("/dev/sda1"),
    rejectsWith("RTR7_ERR_DISK_UNSUITABLE", /sda1 is a partition of sda/),
  );
  await assert.rejects(choose("sdb"), rejectsWith("RTR7_ERR_DISK_UNSUITABLE", /sdb is read-only/));
  await assert.rejects(choose("../block/sda"), rejectsWith("RTR7_ERR_DISK_NOT_FOUND"));
  await assert.rejects(choose(".."), rejectsWith("RTR7_ERR_DISK_NOT_FOUND"));
});
