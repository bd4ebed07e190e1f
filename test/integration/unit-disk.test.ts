// lab/unit-disk.ts: a disk file laid out as a recovery leaves a unit's disk,
// read back with the real tools: sfdisk sees the partition table (disk id =
// FNV-1a of the hostname, boot partition active), each image sits at its
// partition's offset, slot B is empty, /perm is an ext4 that debugfs reads
// the pre-filled files from, and the file is sparse.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { run } from "../../lab/processes.js";
import { assembleUnitDisk } from "../../lab/unit-disk.js";
import { readAt } from "../../lib/disk/device.js";
import { diskIdentifier, planLayout } from "../../lib/wire/disk-layout.js";
import { requireRootAndTools } from "../helpers/netns.js";
import { scratchDir } from "../helpers/scratch.js";

interface SfdiskTable {
  partitiontable: {
    label: string;
    id: string;
    sectorsize: number;
    partitions: { start: number; size: number; type: string; bootable?: boolean }[];
  };
}

test("assembleUnitDisk lays out mbr, boot, root slot A and a pre-filled /perm", async (t) => {
  if (!(await requireRootAndTools(t, ["mke2fs", "sfdisk", "debugfs"]))) return;
  const work = await scratchDir(t, "unit-disk");
  const imagesDir = path.join(work, "images");
  await mkdir(imagesDir);
  // Stand-in images: random bytes, with a zero stretch in boot.img that the
  // sparse copy skips (and that must still read back as zeros).
  const mbr = randomBytes(512);
  const boot = Buffer.concat([randomBytes(1024 * 1024), Buffer.alloc(2 * 1024 * 1024), randomBytes(4096)]);
  const root = randomBytes(2 * 1024 * 1024 + 123);
  await writeFile(path.join(imagesDir, "mbr.img"), mbr);
  await writeFile(path.join(imagesDir, "boot.img"), boot);
  await writeFile(path.join(imagesDir, "root.img"), root);
  const permDir = path.join(work, "perm");
  await mkdir(permDir);
  const interfaces = '{"interfaces":[{"hardware_addr":"52:54:00:12:34:60","name":"lan0"}]}\n';
  await writeFile(path.join(permDir, "interfaces.json"), interfaces);
  await writeFile(path.join(permDir, "gokr-pw.txt"), "secret\n");

  const disk = path.join(work, "disk.img");
  const hostname = "disk-test";
  const diskBytes = 2 * 1024 ** 3;
  await assembleUnitDisk({ imagesDir, disk, hostname, permDir });

  const layout = planLayout(diskBytes);
  assert.equal((await stat(disk)).size, diskBytes);
  const table = (JSON.parse((await run("sfdisk", ["-J", disk])).stdout) as SfdiskTable).partitiontable;
  assert.equal(table.label, "dos");
  assert.equal(Number.parseInt(table.id, 16), diskIdentifier(hostname));
  assert.deepEqual(
    table.partitions.map((partition) => ({
      start: partition.start,
      size: partition.size,
      type: partition.type,
      bootable: partition.bootable === true,
    })),
    layout.partitions.map((partition) => ({
      start: partition.startSector,
      size: partition.sectorCount,
      type: partition.type.toString(16),
      bootable: partition.bootable,
    })),
  );

  const [bootPartition, rootA, rootB, perm] = layout.partitions;
  assert.deepEqual(await readAt(disk, 0, 440), mbr.subarray(0, 440), "sector 0 is not mbr.img's boot code");
  assert.deepEqual(await readAt(disk, bootPartition.byteOffset, boot.length), boot);
  assert.deepEqual(await readAt(disk, rootA.byteOffset, root.length), root);
  assert.ok(
    (await readAt(disk, rootB.byteOffset, 1024 * 1024)).every((byte) => byte === 0),
    "slot B should be empty",
  );

  const permDevice = `${disk}?offset=${perm.byteOffset}`;
  assert.equal((await run("debugfs", ["-R", "cat /interfaces.json", permDevice])).stdout, interfaces);
  assert.equal((await run("debugfs", ["-R", "cat /gokr-pw.txt", permDevice])).stdout, "secret\n");
  const superblock = (await run("debugfs", ["-R", "stats", permDevice])).stdout;
  assert.match(superblock, /^Filesystem volume name:\s+perm$/m);
  assert.match(superblock, /^Block count:\s+(\d+)$/m);
  const blockCount = Number(/^Block count:\s+(\d+)$/m.exec(superblock)?.[1]);
  const blockSize = Number(/^Block size:\s+(\d+)$/m.exec(superblock)?.[1]);
  assert.equal(blockCount * blockSize, perm.byteSize, "/perm does not fill partition 4");

  const allocated = (await stat(disk)).blocks * 512;
  assert.ok(allocated < diskBytes / 4, `the disk file is not sparse: ${allocated} bytes allocated`);
  // The image files are untouched by the assembly.
  assert.deepEqual(await readFile(path.join(imagesDir, "root.img")), root);
});
