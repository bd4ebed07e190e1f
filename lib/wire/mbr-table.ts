// The MBR partition table in bytes: encodes a planned layout into bytes
// 440..511 of sector 0 (disk identifier, 2 reserved bytes, four 16-byte
// entries, 0x55AA) and parses a sector 0 back, so recovery-init can check
// what reached the disk. Bytes 0..439 (boot code) are left to the caller.
import { Rtr7Error } from "../errors.js";
import type { Layout } from "./disk-layout.js";

/** The MBR's boot code: bytes 0..439 of sector 0, what mbr.img and PUT /update/mbr carry. */
export const mbrBootCodeBytes = 440;
/** Offset of the disk identifier in sector 0; the table bytes start here. */
export const tableOffset = mbrBootCodeBytes;
export const tableLength = 72;

const entriesOffset = 446 - tableOffset;
const entryLength = 16;
const activeFlag = 0x80;
// CHS fields are not computed: like gokrazy's packer (and fdisk for anything past
// 8 GiB) every entry carries the "use LBA" marker 0xFE 0xFF 0xFF (head 254,
// sector 63, cylinder 1023), and the LBA fields are the truth.
const lbaOnlyChs = [0xfe, 0xff, 0xff] as const;

export interface ParsedPartitionTable {
  diskId: number;
  /** The non-empty entries (type ≠ 0), numbered 1..4 by their slot. */
  partitions: { number: number; bootable: boolean; type: number; startSector: number; sectorCount: number }[];
}

/** Exactly the 72 bytes for offsets 440..511 of sector 0. */
export function partitionTableBytes(layout: Layout, diskId: number): Buffer {
  if (!Number.isInteger(diskId) || diskId < 0 || diskId > 0xffffffff)
    throw new Rtr7Error("RTR7_ERR_INTERNAL", `encode the partition table: disk id ${diskId} is not 32 bits`);
  const table = Buffer.alloc(tableLength);
  table.writeUInt32LE(diskId, 0);
  for (const partition of layout.partitions) {
    const entry = entriesOffset + (partition.number - 1) * entryLength;
    table[entry] = partition.bootable ? activeFlag : 0;
    table.set(lbaOnlyChs, entry + 1);
    table[entry + 4] = partition.type;
    table.set(lbaOnlyChs, entry + 5);
    table.writeUInt32LE(partition.startSector, entry + 8);
    table.writeUInt32LE(partition.sectorCount, entry + 12);
  }
  table[tableLength - 2] = 0x55;
  table[tableLength - 1] = 0xaa;
  return table;
}

/** Reads the disk identifier and partition entries of a sector 0 (at least 512 bytes). */
export function parsePartitionTable(sector0: Buffer): ParsedPartitionTable {
  const invalid = (why: string): Rtr7Error =>
    new Rtr7Error("RTR7_ERR_DISK_PARTITION_TABLE", `read the MBR partition table: ${why}`);
  if (sector0.length < tableOffset + tableLength)
    throw invalid(`got ${sector0.length} bytes, want at least ${tableOffset + tableLength}`);
  if (sector0[510] !== 0x55 || sector0[511] !== 0xaa)
    throw invalid(
      `signature is 0x${hex2(sector0[510])}${hex2(sector0[511])}, want 0x55aa (no MBR on this disk)`,
    );
  const partitions: ParsedPartitionTable["partitions"] = [];
  for (let index = 0; index < 4; index++) {
    const entry = 446 + index * entryLength;
    const status = sector0[entry] ?? 0;
    const type = sector0[entry + 4] ?? 0;
    if (status !== 0 && status !== activeFlag)
      throw invalid(`entry ${index + 1} has status 0x${hex2(status)}, want 0x00 or 0x80`);
    if (type === 0) continue;
    partitions.push({
      number: index + 1,
      bootable: status === activeFlag,
      type,
      startSector: sector0.readUInt32LE(entry + 8),
      sectorCount: sector0.readUInt32LE(entry + 12),
    });
  }
  return { diskId: sector0.readUInt32LE(tableOffset), partitions };
}

function hex2(byte: number | undefined): string {
  return (byte ?? 0).toString(16).padStart(2, "0");
}
