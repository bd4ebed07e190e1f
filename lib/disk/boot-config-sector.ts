// The boot configuration (lib/wire/boot-config.ts) where it lies on a FAT32
// boot partition, and its rewrite in place: one sector, written, fsynced and
// read back past the page cache, so a power cut leaves the old sector or the
// new one. The partition may be a device or image file of its own (the
// unit's /dev/vda1, a process-mode boot.img) or a range of a whole disk
// (recovery-init writes boot.img into the disk at partition 1's offset), so
// everything here takes the partition's byte offset in `path`. Pure
// JavaScript: the recovery initramfs has no mtools, and lib/disk/fat32.ts
// reads the few FAT fields needed.
import { Rtr7Error, describeError } from "../errors.js";
import { bootConfigFile, parseBootConfig, renderBootConfig, type BootConfig } from "../wire/boot-config.js";
import { fsDisk, readAt, type DiskDevice } from "./device.js";
import { locateRootFile, type ReadAt } from "./fat32.js";

/** Where the boot configuration lies when one sector write can replace it. */
export interface BootConfigSector {
  /** Byte offset of its sector in the partition. */
  offset: number;
  /** Its size: every rewrite is padded to it, so the directory entry never changes. */
  size: number;
  sectorBytes: number;
}

/** Reads ranges of the partition that starts `partitionOffset` bytes into `path`. */
export function partitionRangeReader(path: string, partitionOffset = 0): ReadAt {
  return (offset, length) => readAt(path, partitionOffset + offset, length);
}

/**
 * The sector holding syslinux.cfg, or undefined when it does not sit whole
 * in one sector (a boot partition made by hand, or a file of more than 512
 * bytes): then it can only be rewritten by mtools.
 */
export async function locateBootConfigSector(read: ReadAt): Promise<BootConfigSector | undefined> {
  const extent = await locateRootFile(read, bootConfigFile);
  if (!extent || extent.clusters.length !== 1 || extent.size === 0) return undefined;
  const { sectorBytes } = extent.geometry;
  if (extent.size > sectorBytes) return undefined;
  return { offset: extent.offsets[0] ?? 0, size: extent.size, sectorBytes };
}

/** The configuration in that sector, as the file holds it. */
export async function readBootConfigSector(read: ReadAt, sector: BootConfigSector): Promise<BootConfig> {
  const bytes = await read(sector.offset, sector.size);
  return parseBootConfig(bytes.toString("utf8"));
}

/**
 * Renders `config` at the file's size into its sector of the partition at
 * `partitionOffset` in `path`, writes that one sector, fsyncs and reads it
 * back past the page cache (the device's dropCache where O_DIRECT is
 * refused). RTR7_ERR_BOOT_CONFIG when any of it fails.
 */
export async function writeBootConfigSector(options: {
  path: string;
  partitionOffset?: number;
  sector: BootConfigSector;
  config: BootConfig;
  device?: DiskDevice;
}): Promise<void> {
  const { path, sector } = options;
  const base = options.partitionOffset ?? 0;
  const text = renderBootConfig(options.config, sector.size);
  const at = base + sector.offset;
  const block = await readAt(path, at, sector.sectorBytes);
  if (block.length !== sector.sectorBytes)
    throw new Rtr7Error("RTR7_ERR_BOOT_CONFIG", `${path}: the sector of ${bootConfigFile} lies past its end`);
  text.copy(block, 0);
  const device = options.device ?? fsDisk();
  try {
    const writer = await device.openWriter(path);
    try {
      await writer.write(block, at);
      await writer.sync();
    } finally {
      await writer.close();
    }
    const reader = await device.openReader(path);
    const seen: Buffer[] = [];
    try {
      await reader.dropCache();
      await reader.readRange(at, at + sector.sectorBytes, (bytes) => seen.push(Buffer.from(bytes)));
    } finally {
      await reader.close();
    }
    if (!Buffer.concat(seen).equals(block))
      throw new Error(`read back differs from what was written at byte ${at}`);
  } catch (cause) {
    throw new Rtr7Error(
      "RTR7_ERR_BOOT_CONFIG",
      `write ${bootConfigFile} (${path}, one sector at byte ${at}): ${describeError(cause)}`,
      { cause },
    );
  }
}
