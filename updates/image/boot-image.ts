// boot.img: the unit's boot partition, a 100 MiB FAT32 file system with
// syslinux installed for BIOS (ldlinux.sys, found by the boot sector that
// mbr.img's code jumps to) and for x86-64 UEFI (EFI/BOOT/BOOTX64.EFI, which
// is Debian's syslinux.efi, and its ldlinux.e64), syslinux.cfg with one
// label per root slot (lib/wire/boot-config.ts), and each slot's kernel and
// boot initrd in its own directory (a/, b/; the same files in both).
// syslinux.cfg is copied first, so it gets the first free cluster, one
// sector that the unit rewrites in place. Made with dosfstools, mtools and Debian's mtools-based
// syslinux installer, none of which needs a mount; --invariant and a fixed
// SOURCE_DATE_EPOCH (with the files' mtimes set to it) make two builds of
// the same inputs byte-identical.
import { copyFile, open, rm, stat, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { bootConfigFile, efiBootFiles, slotBootFiles } from "../../lib/wire/boot-config.js";
import { bootBytes, firstPartitionOffsetBytes } from "../../lib/wire/disk-layout.js";
import { runTool } from "./tools.js";

export interface BootImageTools {
  mkfsFat: string;
  mcopy: string;
  mmd: string;
  syslinux: string;
  efiLoader: string;
  efiCore: string;
}

export interface BootImageOptions {
  tools: BootImageTools;
  output: string;
  /** A scratch directory for the files to copy (their mtimes are set). */
  workDir: string;
  /** The rendered syslinux.cfg (one sector). */
  syslinuxConfig: Buffer;
  kernel: string;
  initrd: string;
  /** Seconds since the epoch stamped on every file and the installer's writes. */
  epoch: number;
}

/** The volume label of every unit's boot partition. */
export const bootVolumeLabel = "RTR7BOOT";

export async function makeBootImage(options: BootImageOptions): Promise<void> {
  const env = { SOURCE_DATE_EPOCH: String(options.epoch), MTOOLS_SKIP_CHECK: "1" };
  await rm(options.output, { force: true });
  const file = await open(options.output, "wx");
  try {
    await file.truncate(bootBytes);
  } finally {
    await file.close();
  }
  // -h: the FAT boot sector's "hidden sectors" is where the partition starts,
  // which syslinux's boot sector adds to find ldlinux.sys on the disk.
  await runTool(
    options.tools.mkfsFat,
    [
      "-F",
      "32",
      "-n",
      bootVolumeLabel,
      "--invariant",
      "-h",
      String(firstPartitionOffsetBytes / 512),
      options.output,
    ],
    { what: "format boot.img", env },
  );

  const copy = (from: string) => (to: string) => copyFile(from, to);
  const files = [
    { name: bootConfigFile, write: (to: string) => writeFile(to, options.syslinuxConfig) },
    ...(["a", "b"] as const).flatMap((slot) => [
      { name: slotBootFiles(slot).kernel, write: copy(options.kernel) },
      { name: slotBootFiles(slot).initrd, write: copy(options.initrd) },
    ]),
    { name: efiBootFiles.loader, write: copy(options.tools.efiLoader) },
    { name: efiBootFiles.core, write: copy(options.tools.efiCore) },
  ];
  const made = new Set<string>();
  for (const { name, write } of files) {
    // Each directory on the way, once ("EFI", then "EFI/BOOT").
    const parts = name.split("/").slice(0, -1);
    for (const prefix of parts.map((_, at) => parts.slice(0, at + 1).join("/"))) {
      if (made.has(prefix)) continue;
      made.add(prefix);
      await runTool(options.tools.mmd, ["-i", options.output, `::${prefix}`], {
        what: `make ${prefix}/ on boot.img`,
        env,
      });
    }
    const local = path.join(options.workDir, `boot-${name.replaceAll("/", "-")}`);
    await write(local);
    await utimes(local, options.epoch, options.epoch);
    await runTool(options.tools.mcopy, ["-m", "-i", options.output, local, `::${name}`], {
      what: `copy ${name} (${(await stat(local)).size} bytes) onto boot.img`,
      env,
      hint: `boot.img is ${bootBytes / 1024 / 1024} MiB: syslinux, the kernel and the initrd must fit together; check --kernel.`,
    });
    await rm(local, { force: true });
  }
  // Debian's syslinux installs through mtools; no --offset: boot.img is the
  // partition itself, and -h above told the boot sector where it will sit.
  await runTool(options.tools.syslinux, ["--install", options.output], {
    what: "install syslinux on boot.img",
    env,
  });
}
