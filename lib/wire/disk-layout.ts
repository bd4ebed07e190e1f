// The disk layout of a unit, as gokrazy and router7 lay it out: an MBR with
// 1 boot (FAT, 100 MiB, active), 2 and 3 the root slots A and B (squashfs,
// 500 MiB each) and 4 /perm (ext4, the rest, at least 100 MiB), the first
// partition 4 MiB into the disk. This module only computes: it plans the
// partitions for a disk size, encodes the partition table (bytes 440..511 of
// sector 0; the boot code in 0..439 comes from mbr.img) and parses one back
// for verification. Writing is the caller's job.
import { Rtr7Error } from "../errors.js";

export {
  mbrBootCodeBytes,
  partitionTableBytes,
  parsePartitionTable,
  tableLength as partitionTableLength,
  tableOffset as partitionTableOffset,
  type ParsedPartitionTable,
} from "./mbr-table.js";

const MiB = 1024 * 1024;

/** Where partition 1 starts: 8192 × 512-byte sectors, as gokrazy's packer does. The
 * boot code in gokrazy's mbr.img loads the kernel from absolute sectors computed for
 * this offset, so it must not move. */
export const firstPartitionOffsetBytes = 4 * MiB;
export const bootBytes = 100 * MiB;
export const rootSlotBytes = 500 * MiB;
export const minimumPermBytes = 100 * MiB;

/** MBR partition type bytes. gokrazy types the squashfs root slots as Linux (0x83):
 * squashfs has no type of its own. */
export const partitionTypes = { fat32Lba: 0x0c, linux: 0x83 } as const;

export type PartitionRole = "boot" | "rootA" | "rootB" | "perm";

/** Each partition's number: /dev/sda<N>, PARTUUID=<disk id>-0<N>. */
export const partitionNumbers = { boot: 1, rootA: 2, rootB: 3, perm: 4 } as const satisfies Record<
  PartitionRole,
  1 | 2 | 3 | 4
>;

/** The partition number of root slot "a" or "b". */
export function rootSlotPartition(slot: "a" | "b"): 2 | 3 {
  return slot === "a" ? partitionNumbers.rootA : partitionNumbers.rootB;
}

export interface PlannedPartition {
  /** 1..4, as in /dev/sda<number> and PARTUUID=<disk id>-0<number>. */
  number: 1 | 2 | 3 | 4;
  role: PartitionRole;
  /** MBR partition type byte. */
  type: number;
  /** The MBR "active" flag (0x80); set on the boot partition only. */
  bootable: boolean;
  startSector: number;
  sectorCount: number;
  byteOffset: number;
  byteSize: number;
}

export interface Layout {
  sectorSize: number;
  /** The disk's size, rounded down to whole sectors. */
  diskBytes: number;
  /** Bytes after /perm that an MBR cannot address (disks beyond 2 TiB with 512-byte sectors). */
  unaddressableBytes: number;
  partitions: readonly [PlannedPartition, PlannedPartition, PlannedPartition, PlannedPartition];
}

/** The smallest disk that holds the layout with a /perm of minimumPermBytes. */
export function minimumDiskBytes(): number {
  return firstPartitionOffsetBytes + bootBytes + 2 * rootSlotBytes + minimumPermBytes;
}

/** FNV-1a, 32 bits, over the UTF-8 bytes of `text` (Go's hash/fnv New32a). */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, "utf8")) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/** The MBR disk identifier of a unit: FNV-1a of its hostname, as gokrazy computes it. */
export function diskIdentifier(hostname: string): number {
  return fnv1a32(hostname);
}

/** `root=PARTUUID=...` value of a partition: the disk id in 8 hex digits, then `-0N`. */
export function partitionUuid(diskId: number, partitionNumber: number): string {
  return `${(diskId >>> 0).toString(16).padStart(8, "0")}-${partitionNumber.toString(16).padStart(2, "0")}`;
}

/** Plans the four partitions for a disk of `diskBytes`. Throws RTR7_ERR_DISK_TOO_SMALL. */
export function planLayout(diskBytes: number, sectorSize = 512): Layout {
  if (![512, 1024, 2048, 4096].includes(sectorSize))
    throw new Rtr7Error(
      "RTR7_ERR_INTERNAL",
      `plan the disk layout: sector size ${sectorSize} is not 512..4096`,
    );
  if (!Number.isSafeInteger(diskBytes) || diskBytes < 0)
    throw new Rtr7Error(
      "RTR7_ERR_INTERNAL",
      `plan the disk layout: disk size ${diskBytes} is not a byte count`,
    );
  const needed = minimumDiskBytes();
  const diskSectors = Math.floor(diskBytes / sectorSize);
  if (diskSectors * sectorSize < needed)
    throw new Rtr7Error(
      "RTR7_ERR_DISK_TOO_SMALL",
      `plan the disk layout: the disk holds ${describeSize(diskBytes)}, need at least ${describeSize(needed)} ` +
        `(4 MiB gap, 100 MiB boot, 2 × 500 MiB root, /perm of at least 100 MiB)`,
    );

  const sectors = (bytes: number): number => bytes / sectorSize;
  const bootStart = sectors(firstPartitionOffsetBytes);
  const rootAStart = bootStart + sectors(bootBytes);
  const rootBStart = rootAStart + sectors(rootSlotBytes);
  const permStart = rootBStart + sectors(rootSlotBytes);
  // An MBR entry holds 32-bit sector numbers; /perm ends where they end.
  const permEnd = Math.min(diskSectors, 2 ** 32);

  const partition = (
    number: PlannedPartition["number"],
    role: PartitionRole,
    type: number,
    startSector: number,
    sectorCount: number,
  ): PlannedPartition => ({
    number,
    role,
    type,
    bootable: role === "boot",
    startSector,
    sectorCount,
    byteOffset: startSector * sectorSize,
    byteSize: sectorCount * sectorSize,
  });
  return {
    sectorSize,
    diskBytes: diskSectors * sectorSize,
    unaddressableBytes: (diskSectors - permEnd) * sectorSize,
    partitions: [
      partition(partitionNumbers.boot, "boot", partitionTypes.fat32Lba, bootStart, sectors(bootBytes)),
      partition(partitionNumbers.rootA, "rootA", partitionTypes.linux, rootAStart, sectors(rootSlotBytes)),
      partition(partitionNumbers.rootB, "rootB", partitionTypes.linux, rootBStart, sectors(rootSlotBytes)),
      partition(partitionNumbers.perm, "perm", partitionTypes.linux, permStart, permEnd - permStart),
    ],
  };
}

/** The block device of partition `number` of `disk`: /dev/sda → /dev/sda2, /dev/nvme0n1 →
 * /dev/nvme0n1p2, /dev/mmcblk0 → /dev/mmcblk0p2 (the kernel inserts "p" after a digit). */
export function partitionDevice(disk: string, number: number): string {
  return disk + partitionSuffix(disk, number);
}

/** The part partitionDevice appends: "2" or "p2". */
export function partitionSuffix(disk: string, number: number): string {
  if (!Number.isInteger(number) || number < 1 || number > 4)
    throw new Rtr7Error(
      "RTR7_ERR_INTERNAL",
      `name partition ${number} of ${disk}: an MBR has partitions 1..4`,
    );
  return /[0-9]$/.test(disk) ? `p${number}` : String(number);
}

/** "1.18 GiB (1262485504 bytes)": sizes in messages, exact and readable. */
export function describeSize(bytes: number): string {
  const readable =
    bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(2)} GiB` : `${(bytes / MiB).toFixed(1)} MiB`;
  return `${readable} (${bytes} bytes)`;
}
