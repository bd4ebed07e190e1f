// Files on the unit's FAT boot partition, read and written with mtools
// (mcopy), which works the same on a block device (/dev/vda1 on a unit) and
// on an image file (DIR/boot.img in process mode) and needs no vfat mount:
// this machine's kernel has no vfat, and the unit never has the partition
// mounted, so an update cannot leave it mounted half-written. mtools only
// ever writes files no boot reads (the inactive slot's kernel); the boot
// configuration, which every boot reads, is rewritten in place as one
// sector (lib/wire/boot-config.ts), found through lib/disk/fat32.ts, by
// lib/disk/boot-config-sector.ts.
import { execFile } from "node:child_process";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import {
  locateBootConfigSector,
  partitionRangeReader,
  writeBootConfigSector,
  type BootConfigSector,
} from "../../lib/disk/boot-config-sector.js";
import type { DiskDevice } from "../../lib/disk/device.js";
import type { ReadAt } from "../../lib/disk/fat32.js";
import { Rtr7Error } from "../../lib/errors.js";
import {
  bootConfigFile,
  parseBootConfig,
  renderBootConfig,
  type BootConfig,
} from "../../lib/wire/boot-config.js";

const execFileAsync = promisify(execFile);

const mtoolsEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  MTOOLS_SKIP_CHECK: "1",
  PATH: `${process.env.PATH ?? ""}:/usr/bin:/bin:/usr/sbin:/sbin`,
});

async function mcopy(args: string[], what: string): Promise<Buffer> {
  try {
    const { stdout } = await execFileAsync("mcopy", args, {
      env: mtoolsEnv(),
      encoding: "buffer",
      maxBuffer: 256 * 1024 * 1024,
      timeout: 60_000,
    });
    return stdout;
  } catch (cause) {
    const failed = cause as { code?: string; stderr?: Buffer };
    if (failed.code === "ENOENT")
      throw new Rtr7Error("RTR7_ERR_TOOL_MISSING", `${what}: mcopy (mtools) is not installed`, { cause });
    throw new Rtr7Error(
      "RTR7_ERR_BOOT_CONFIG",
      `${what}: mcopy failed: ${failed.stderr?.toString("utf8").trim() || String(cause)}`,
      { cause },
    );
  }
}

/** The bytes of `name` in the FAT file system at `boot`. */
export async function readBootFile(boot: string, name: string): Promise<Buffer> {
  return mcopy(["-n", "-i", boot, `::${name}`, "-"], `read ${name} from the boot partition ${boot}`);
}

/** Copies `name` out of the boot partition to `destination`. */
export async function copyBootFileOut(boot: string, name: string, destination: string): Promise<void> {
  await mcopy(
    ["-n", "-o", "-i", boot, `::${name}`, destination],
    `copy ${name} out of the boot partition ${boot}`,
  );
}

/**
 * Replaces `name` (a path such as "b/vmlinuz"; its directory is made if
 * missing) in the boot partition with `data`, then flushes the partition
 * to disk. Not atomic: only for files no boot reads while it runs.
 */
export async function writeBootFile(boot: string, name: string, data: Buffer): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), "rtr7-boot-"));
  try {
    const source = path.join(dir, path.basename(name));
    await writeFile(source, data);
    const directory = path.posix.dirname(name);
    if (directory !== ".") await makeBootDirectory(boot, directory);
    await mcopy(["-n", "-o", "-i", boot, source, `::${name}`], `write ${name} to the boot partition ${boot}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  await syncTarget(boot);
}

/** mmd ::DIR, unless it exists (mdir finds it). */
async function makeBootDirectory(boot: string, directory: string): Promise<void> {
  const mtool = (tool: string, args: string[]) =>
    execFileAsync(tool, ["-i", boot, ...args], { env: mtoolsEnv(), timeout: 60_000 });
  const exists = await mtool("mdir", ["-b", `::${directory}`]).then(
    () => true,
    () => false,
  );
  if (exists) return;
  try {
    await mtool("mmd", [`::${directory}`]);
  } catch (cause) {
    const failed = cause as { code?: string; stderr?: string };
    throw new Rtr7Error(
      "RTR7_ERR_BOOT_CONFIG",
      `make ${directory} on the boot partition ${boot}: ${failed.code === "ENOENT" ? "mmd (mtools) is not installed" : failed.stderr?.trim() || String(cause)}`,
      { cause },
    );
  }
}

async function syncTarget(boot: string): Promise<void> {
  const handle = await open(boot, "r+");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Reads ranges of a partition or image file. */
export function partitionReader(target: string): ReadAt {
  return partitionRangeReader(target);
}

export type { BootConfigSector };

/**
 * The sector holding syslinux.cfg, or undefined when it does not sit whole
 * in one sector (a boot partition made by hand, or a file of more than 512
 * bytes): then it can only be rewritten by mtools.
 */
export async function bootConfigSector(boot: string): Promise<BootConfigSector | undefined> {
  return locateBootConfigSector(partitionReader(boot));
}

export async function readBootConfig(boot: string): Promise<BootConfig> {
  return parseBootConfig((await readBootFile(boot, bootConfigFile)).toString("utf8"));
}

/**
 * Writes `config` to the boot partition. Where the file sits in one sector
 * (every partition rtr7 builds), that sector is rewritten in place, fsynced
 * and read back past the page cache (lib/disk/boot-config-sector.ts, which
 * recovery-init shares): a power cut leaves the old sector or the new.
 * Otherwise mtools writes it (not power-safe, and said so in the log); the
 * new file is one sector, so the next rewrite is in place.
 */
export async function writeBootConfig(
  boot: string,
  config: BootConfig,
  options: { device?: DiskDevice; warn?: (message: string) => void } = {},
): Promise<"sector" | "file"> {
  const sector = await bootConfigSector(boot);
  if (!sector) {
    options.warn?.(
      `${bootConfigFile} on ${boot} does not sit in one sector: rewriting it with mtools, which a power cut could tear; it is one sector from now on`,
    );
    await writeBootFile(boot, bootConfigFile, renderBootConfig(config));
    return "file";
  }
  await writeBootConfigSector({
    path: boot,
    sector,
    config,
    ...(options.device ? { device: options.device } : {}),
  });
  return "sector";
}
