// Where a file in the root directory of a FAT32 file system keeps its bytes:
// which clusters, at which byte offsets of the partition. The unit (and
// recovery-init, for a fleet release) uses it to rewrite the boot
// configuration (lib/wire/boot-config.ts) in place, as one sector write that
// a power cut cannot tear (lib/disk/boot-config-sector.ts). mtools, which does everything
// else on the boot partition, cannot do that: `mcopy -o` frees the file's
// clusters, allocates new ones and rewrites the directory entry, several
// writes with a window in which the file is neither old nor new. No npm
// library reads FAT without mounting it, and a mount needs vfat in the
// kernel (this machine's has none), so the few fields needed are read here:
// the BIOS parameter block, the FAT chain and 8.3 directory entries.
import { Rtr7Error } from "../errors.js";

/** Reads `length` bytes at `offset` of the partition (fewer only at its end). */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

export interface FatGeometry {
  sectorBytes: number;
  clusterBytes: number;
  /** Byte offset of the first FAT. */
  fatOffset: number;
  /** Byte offset of cluster 2, the first data cluster. */
  dataOffset: number;
  rootCluster: number;
}

export interface FatFileExtent {
  size: number;
  /** The file's clusters in order. */
  clusters: number[];
  /** Byte offset of each cluster in the partition. */
  offsets: number[];
  geometry: FatGeometry;
}

const endOfChain = 0x0ffffff8;
const maxChain = 1 << 20;

function notFat32(why: string): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_BOOT_CONFIG", `the boot partition is not FAT32: ${why}`, {
    hint: "Re-image the unit with `rtr7 recover`: that writes a new boot partition.",
  });
}

export async function readFatGeometry(read: ReadAt): Promise<FatGeometry> {
  const sector = await read(0, 512);
  if (sector.length < 512 || sector.readUInt16LE(510) !== 0xaa55) throw notFat32("no boot sector signature");
  const sectorBytes = sector.readUInt16LE(11);
  const sectorsPerCluster = sector.readUInt8(13);
  const reserved = sector.readUInt16LE(14);
  const fats = sector.readUInt8(16);
  const fat16Size = sector.readUInt16LE(22);
  const fatSectors = sector.readUInt32LE(36);
  const rootCluster = sector.readUInt32LE(44);
  if (![512, 1024, 2048, 4096].includes(sectorBytes)) throw notFat32(`${sectorBytes} bytes per sector`);
  if (sectorsPerCluster === 0 || (sectorsPerCluster & (sectorsPerCluster - 1)) !== 0)
    throw notFat32(`${sectorsPerCluster} sectors per cluster`);
  if (fat16Size !== 0 || fatSectors === 0 || fats === 0 || rootCluster < 2)
    throw notFat32("its BIOS parameter block describes FAT12 or FAT16");
  return {
    sectorBytes,
    clusterBytes: sectorBytes * sectorsPerCluster,
    fatOffset: reserved * sectorBytes,
    dataOffset: (reserved + fats * fatSectors) * sectorBytes,
    rootCluster,
  };
}

async function chain(read: ReadAt, geometry: FatGeometry, first: number): Promise<number[]> {
  const clusters: number[] = [];
  for (let cluster = first; cluster >= 2 && cluster < endOfChain;) {
    if (clusters.length >= maxChain) throw notFat32(`the cluster chain from ${first} does not end`);
    clusters.push(cluster);
    const entry = await read(geometry.fatOffset + cluster * 4, 4);
    if (entry.length < 4) throw notFat32(`cluster ${cluster} lies past the end of the FAT`);
    cluster = entry.readUInt32LE(0) & 0x0fffffff;
  }
  return clusters;
}

const clusterOffset = (geometry: FatGeometry, cluster: number): number =>
  geometry.dataOffset + (cluster - 2) * geometry.clusterBytes;

/** "syslinux.cfg" as a directory entry spells it: "SYSLINUXCFG". */
function shortName(name: string): string {
  const [base = "", extension = ""] = name.toUpperCase().split(".");
  if (base.length === 0 || base.length > 8 || extension.length > 3 || name.split(".").length > 2)
    throw new Rtr7Error("RTR7_ERR_INTERNAL", `${name} is not an 8.3 file name`);
  return base.padEnd(8, " ") + extension.padEnd(3, " ");
}

/** The clusters of `name` (an 8.3 name) in the root directory, or undefined when there is none. */
export async function locateRootFile(read: ReadAt, name: string): Promise<FatFileExtent | undefined> {
  const geometry = await readFatGeometry(read);
  const wanted = shortName(name);
  for (const cluster of await chain(read, geometry, geometry.rootCluster)) {
    const entries = await read(clusterOffset(geometry, cluster), geometry.clusterBytes);
    for (let at = 0; at + 32 <= entries.length; at += 32) {
      const first = entries[at];
      if (first === 0x00) return undefined;
      const attributes = entries[at + 11] ?? 0;
      if (first === 0xe5 || attributes === 0x0f || (attributes & 0x18) !== 0) continue;
      if (entries.toString("latin1", at, at + 11) !== wanted) continue;
      const start = (entries.readUInt16LE(at + 20) << 16) | entries.readUInt16LE(at + 26);
      const size = entries.readUInt32LE(at + 28);
      const clusters = size === 0 ? [] : await chain(read, geometry, start);
      return { size, clusters, offsets: clusters.map((c) => clusterOffset(geometry, c)), geometry };
    }
  }
  return undefined;
}
