// root.img: the staged root tree as a squashfs, made by mksquashfs with every
// owner root and every time stamp fixed, so the same tree gives the same
// bytes. The compressor is chosen for boot speed: a unit (a QEMU one under
// software emulation above all) reads node's ~100 MB from the image at every
// boot. Measured here (node 20 root, QEMU TCG, reading a 94 MiB binary once):
//   gzip      40.7 MiB, mksquashfs 11.9 s, read in the guest 2.2-3.3 s
//   zstd(15)  36.9 MiB,              8.3 s,                    1.5-2.1 s
//   lz4       59.2 MiB,              0.3 s,                    0.85-1.3 s
//   lz4 -Xhc  48.8 MiB,             11.9 s,                    0.75-1.0 s
// lz4 reads fastest and builds fastest; its larger image still fills only
// an eighth of a 500 MiB slot.
import { stat } from "node:fs/promises";
import { Rtr7Error } from "../../lib/errors.js";
import { describeSize, rootSlotBytes } from "../../lib/wire/disk-layout.js";
import { runTool } from "./tools.js";

export type RootCompression = "gzip" | "lz4" | "zstd";

export const defaultRootCompression: RootCompression = "lz4";

/** mksquashfs's options per compressor. */
const compressorOptions: Record<RootCompression, string[]> = {
  gzip: ["-comp", "gzip"],
  lz4: ["-comp", "lz4"],
  zstd: ["-comp", "zstd"],
};

export interface RootImageOptions {
  mksquashfs: string;
  /** The staged tree. */
  stagingDir: string;
  output: string;
  /** Seconds since the epoch for the file system's and every file's time. */
  epoch: number;
  compression?: RootCompression;
}

/** Runs mksquashfs and checks that the image fits a root slot; returns its size. */
export async function makeRootImage(options: RootImageOptions): Promise<number> {
  const time = String(options.epoch);
  await runTool(
    options.mksquashfs,
    [
      options.stagingDir,
      options.output,
      "-noappend",
      "-all-root",
      "-reproducible",
      "-mkfs-time",
      time,
      "-all-time",
      time,
      // The staging directory's extended attributes (SELinux labels) are the workstation's.
      "-no-xattrs",
      ...compressorOptions[options.compression ?? defaultRootCompression],
      "-quiet",
      "-no-progress",
    ],
    { what: `make root.img from ${options.stagingDir}` },
  );
  const bytes = (await stat(options.output)).size;
  if (bytes > rootSlotBytes) {
    throw new Rtr7Error(
      "RTR7_ERR_IMAGE_BUILD",
      `make root.img: it holds ${describeSize(bytes)}, a root slot only ${describeSize(rootSlotBytes)}`,
      { hint: "Leave out large --add files, or choose a stronger compression." },
    );
  }
  return bytes;
}
