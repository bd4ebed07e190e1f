// A unit's disk as a recovery leaves it, made on the workstation: a raw disk
// file with sector 0 = mbr.img's boot code + the partition table (disk id =
// FNV-1a of the hostname), boot.img in partition 1, root.img in slot A
// (partition 2), and an ext4 /perm in partition 4, optionally pre-filled
// from a directory (interfaces.json, gokr-pw.txt). For QEMU tests and demos
// that boot a unit from its disk without a recovery first. The file is
// sparse: only non-zero image blocks are written. A fleet release's
// syslinux.cfg (disk 0) is pointed at this disk, as recovery-init does.
import {
  locateBootConfigSector,
  partitionRangeReader,
  readBootConfigSector,
  writeBootConfigSector,
} from "../lib/disk/boot-config-sector.js";
import { bootConfigRootDisks, withConfigRootDisk } from "../lib/wire/boot-config.js";
import { execFile } from "node:child_process";
import { open, rm, stat } from "node:fs/promises";
import { promisify } from "node:util";
import {
  diskIdentifier,
  mbrBootCodeBytes,
  partitionTableBytes,
  partitionTableLength,
  partitionTableOffset,
  planLayout,
} from "../lib/wire/disk-layout.js";
import { imageFiles } from "../lib/wire/images.js";

const execFileAsync = promisify(execFile);

export interface UnitDiskOptions {
  /** Holds mbr.img, boot.img and root.img (what `rtr7 image build` wrote). */
  imagesDir: string;
  /** The disk file to create (replaced if it exists). */
  disk: string;
  /** Default 2 GiB. */
  diskBytes?: number;
  hostname: string;
  /** Copied into /perm (mke2fs -d); default an empty /perm. */
  permDir?: string;
}

const chunkBytes = 1024 * 1024;

/** Copies `source` into `target` at `offset`, skipping all-zero chunks (the file is new and sparse). */
async function writeSparse(
  target: import("node:fs/promises").FileHandle,
  source: string,
  offset: number,
  capacity: number,
  limit = Infinity,
): Promise<void> {
  const size = Math.min((await stat(source)).size, limit);
  if (size > capacity)
    throw new Error(`${source} holds ${size} bytes, its place on the disk only ${capacity}`);
  const input = await open(source, "r");
  try {
    const buffer = Buffer.alloc(chunkBytes);
    for (let done = 0; done < size;) {
      const { bytesRead } = await input.read(buffer, 0, Math.min(chunkBytes, size - done), done);
      if (bytesRead === 0) throw new Error(`${source} ended early at byte ${done}`);
      const chunk = buffer.subarray(0, bytesRead);
      if (chunk.some((byte) => byte !== 0)) await target.write(chunk, 0, bytesRead, offset + done);
      done += bytesRead;
    }
  } finally {
    await input.close();
  }
}

/** A fleet release's syslinux.cfg names disk 0: point it at this disk, as recovery-init does. */
async function fitFleetBootConfig(disk: string, partitionOffset: number, diskId: number): Promise<void> {
  const read = partitionRangeReader(disk, partitionOffset);
  const sector = await locateBootConfigSector(read).catch(() => undefined);
  if (!sector) return;
  const config = await readBootConfigSector(read, sector);
  if (!bootConfigRootDisks(config).includes(0)) return;
  await writeBootConfigSector({
    path: disk,
    partitionOffset,
    sector,
    config: withConfigRootDisk(config, diskId),
  });
}

export async function assembleUnitDisk(options: UnitDiskOptions): Promise<void> {
  const layout = planLayout(options.diskBytes ?? 2 * 1024 ** 3);
  const [boot, rootA, , perm] = layout.partitions;
  const image = (name: string): string => `${options.imagesDir}/${name}`;
  await rm(options.disk, { force: true });
  const disk = await open(options.disk, "wx");
  try {
    await disk.truncate(layout.diskBytes);
    await writeSparse(disk, image(imageFiles.mbr), 0, mbrBootCodeBytes, mbrBootCodeBytes);
    await disk.write(
      partitionTableBytes(layout, diskIdentifier(options.hostname)),
      0,
      partitionTableLength,
      partitionTableOffset,
    );
    await writeSparse(disk, image(imageFiles.boot), boot.byteOffset, boot.byteSize);
    await writeSparse(disk, image(imageFiles.root), rootA.byteOffset, rootA.byteSize);
    await disk.sync();
  } finally {
    await disk.close();
  }
  await fitFleetBootConfig(options.disk, boot.byteOffset, diskIdentifier(options.hostname));
  // mke2fs writes the file system in place at the offset; the size is in KiB.
  await execFileAsync(
    "mke2fs",
    [
      "-q",
      "-t",
      "ext4",
      "-F",
      "-L",
      "perm",
      ...(options.permDir === undefined ? [] : ["-d", options.permDir]),
      "-E",
      `offset=${perm.byteOffset}`,
      options.disk,
      `${perm.byteSize / 1024}k`,
    ],
    { encoding: "utf8", timeout: 120_000 },
  ).catch((error: { stderr?: string; message: string }) => {
    throw new Error(`mke2fs for /perm in ${options.disk} failed: ${error.stderr?.trim() || error.message}`, {
      cause: error,
    });
  });
}
