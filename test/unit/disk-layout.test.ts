// The disk layout: exact sectors for known disk sizes, the size limit, the
// FNV-1a disk identifier, partition device names, and the 72 table bytes
// checked by util-linux's sfdisk reading them from a sparse disk image.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { open } from "node:fs/promises";
import path from "node:path";
import { isRtr7Error } from "../../lib/errors.js";
import {
  diskIdentifier,
  fnv1a32,
  minimumDiskBytes,
  parsePartitionTable,
  partitionDevice,
  partitionTableBytes,
  partitionUuid,
  planLayout,
  type Layout,
} from "../../lib/wire/disk-layout.js";
import { scratchDir } from "../helpers/scratch.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** [start, count] per partition, for compact expectations. */
function sectorsOf(layout: Layout): [number, number][] {
  return layout.partitions.map((partition) => [partition.startSector, partition.sectorCount]);
}

test("a 2 GiB disk: boot at 4 MiB, two 500 MiB slots, /perm takes the rest", () => {
  const layout = planLayout(2 * GiB);
  assert.deepEqual(sectorsOf(layout), [
    [8192, 204800],
    [212992, 1024000],
    [1236992, 1024000],
    [2260992, 1933312],
  ]);
  assert.deepEqual(
    layout.partitions.map((partition) => [partition.role, partition.type, partition.bootable]),
    [
      ["boot", 0x0c, true],
      ["rootA", 0x83, false],
      ["rootB", 0x83, false],
      ["perm", 0x83, false],
    ],
  );
  const perm = layout.partitions[3];
  assert.equal(perm.byteOffset, 1104 * MiB);
  assert.equal(perm.byteOffset + perm.byteSize, 2 * GiB);
  assert.equal(layout.unaddressableBytes, 0);
});

test("a 1 TB disk: only /perm grows", () => {
  const layout = planLayout(1_000_000_000_000);
  assert.deepEqual(sectorsOf(layout).slice(0, 3), sectorsOf(planLayout(2 * GiB)).slice(0, 3));
  assert.deepEqual(sectorsOf(layout)[3], [2260992, 1_953_125_000 - 2260992]);
});

test("a 4 TiB disk: /perm ends at sector 2^32, the last an MBR can address", () => {
  const layout = planLayout(4 * 1024 * GiB);
  assert.equal(layout.partitions[3].startSector + layout.partitions[3].sectorCount, 2 ** 32);
  assert.equal(layout.unaddressableBytes, 2 * 1024 * GiB);
});

test("4096-byte sectors keep the same byte offsets", () => {
  const layout = planLayout(2 * GiB, 4096);
  assert.deepEqual(sectorsOf(layout)[0], [1024, 25600]);
  assert.deepEqual(
    layout.partitions.map((partition) => partition.byteOffset),
    planLayout(2 * GiB).partitions.map((partition) => partition.byteOffset),
  );
});

test("a disk exactly at the limit gets a 100 MiB /perm; one sector less is too small", () => {
  assert.equal(minimumDiskBytes(), 1204 * MiB);
  assert.equal(planLayout(minimumDiskBytes()).partitions[3].byteSize, 100 * MiB);
  for (const bytes of [minimumDiskBytes() - 512, minimumDiskBytes() - 1, 1 * GiB]) {
    assert.throws(
      () => planLayout(bytes),
      (error: unknown) =>
        isRtr7Error(error, "RTR7_ERR_DISK_TOO_SMALL") &&
        error.message.includes(`${bytes} bytes`) &&
        error.message.includes(`${minimumDiskBytes()} bytes`),
    );
  }
});

test("FNV-1a 32 matches the reference vectors; a hostname gives the disk id", () => {
  assert.equal(fnv1a32(""), 0x811c9dc5);
  assert.equal(fnv1a32("a"), 0xe40c292c);
  assert.equal(fnv1a32("foobar"), 0xbf9cf968);
  assert.equal(fnv1a32("bäckerei"), 0x21096d45); // UTF-8 bytes, as Go hashes a string
  assert.equal(diskIdentifier("router7"), 0x020a4549);
  assert.equal(partitionUuid(diskIdentifier("router7"), 2), "020a4549-02");
});

test("partition device names follow the kernel's rule: a p after a trailing digit", () => {
  assert.equal(partitionDevice("/dev/sda", 2), "/dev/sda2");
  assert.equal(partitionDevice("/dev/vda", 4), "/dev/vda4");
  assert.equal(partitionDevice("/dev/nvme0n1", 2), "/dev/nvme0n1p2");
  assert.equal(partitionDevice("/dev/mmcblk0", 1), "/dev/mmcblk0p1");
  assert.throws(
    () => partitionDevice("/dev/sda", 5),
    (error: unknown) => isRtr7Error(error),
  );
});

test("the table is 72 bytes: disk id, 2 zero bytes, 4 entries, 0x55AA; it parses back", () => {
  const layout = planLayout(2 * GiB);
  const diskId = diskIdentifier("router7");
  const table = partitionTableBytes(layout, diskId);
  assert.equal(table.length, 72);
  assert.equal(table.readUInt32LE(0), diskId);
  assert.deepEqual([...table.subarray(4, 6)], [0, 0]);
  assert.deepEqual(
    [...table.subarray(6, 22)],
    [0x80, 0xfe, 0xff, 0xff, 0x0c, 0xfe, 0xff, 0xff, 0x00, 0x20, 0, 0, 0x00, 0x20, 0x03, 0],
  );
  assert.deepEqual([...table.subarray(70)], [0x55, 0xaa]);

  const sector0 = Buffer.concat([Buffer.alloc(440, 0xcc), table]);
  const parsed = parsePartitionTable(sector0);
  assert.equal(parsed.diskId, diskId);
  assert.deepEqual(
    parsed.partitions,
    layout.partitions.map(({ number, bootable, type, startSector, sectorCount }) => ({
      number,
      bootable,
      type,
      startSector,
      sectorCount,
    })),
  );
});

test("parsing rejects a sector without the 0x55AA signature or too short", () => {
  const isTableError = (error: unknown): boolean => isRtr7Error(error, "RTR7_ERR_DISK_PARTITION_TABLE");
  assert.throws(() => parsePartitionTable(Buffer.alloc(512)), isTableError);
  assert.throws(() => parsePartitionTable(Buffer.alloc(100)), isTableError);
});

interface SfdiskJson {
  partitiontable: {
    label: string;
    id: string;
    unit: string;
    sectorsize?: number;
    partitions: { node: string; start: number; size: number; type: string; bootable?: boolean }[];
  };
}

for (const [label, diskBytes] of [
  ["2 GiB", 2 * GiB],
  ["1 TB", 1_000_000_000_000],
] as const) {
  test(`sfdisk reads the table of a ${label} sparse disk image as planned`, async (t) => {
    if (spawnSync("sfdisk", ["--version"]).status !== 0) return t.skip("needs sfdisk (util-linux)");
    const image = path.join(await scratchDir(t, "disk-layout"), "disk.img");
    const layout = planLayout(diskBytes);
    const diskId = diskIdentifier("router7");
    const file = await open(image, "w");
    try {
      await file.truncate(diskBytes);
      await file.write(partitionTableBytes(layout, diskId), 0, 72, 440);
    } finally {
      await file.close();
    }

    const json = spawnSync("sfdisk", ["--json", image], { encoding: "utf8" });
    assert.equal(json.status, 0, json.stderr);
    const table = (JSON.parse(json.stdout) as SfdiskJson).partitiontable;
    assert.equal(table.label, "dos");
    assert.equal(table.id, "0x020a4549");
    assert.equal(table.unit, "sectors");
    assert.deepEqual(
      table.partitions.map(({ node, start, size, type, bootable }) => ({
        node: path.basename(node),
        start,
        size,
        type,
        bootable: bootable ?? false,
      })),
      layout.partitions.map((partition) => ({
        node: `disk.img${partition.number}`,
        start: partition.startSector,
        size: partition.sectorCount,
        type: partition.type.toString(16),
        bootable: partition.bootable,
      })),
    );

    const dump = spawnSync("sfdisk", ["--dump", image], { encoding: "utf8" });
    assert.equal(dump.status, 0, dump.stderr);
    assert.match(dump.stdout, /^label: dos$/m);
    assert.match(dump.stdout, /^label-id: 0x020a4549$/m);
    assert.match(dump.stdout, /disk\.img1 : start=\s*8192, size=\s*204800, type=c, bootable$/m);

    const verify = spawnSync("sfdisk", ["--verify", image], { encoding: "utf8" });
    assert.equal(verify.status, 0, verify.stdout + verify.stderr);
  });
}
