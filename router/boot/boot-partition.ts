// Files on the unit's FAT boot partition, read and written with mtools
// (mcopy), which works the same on a block device (/dev/vda1 on a unit) and
// on an image file (DIR/boot.img in process mode) and needs no vfat mount:
// this machine's kernel has no vfat, and the unit never has the partition
// mounted, so an update cannot leave it mounted half-written.
import { execFile } from "node:child_process";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Rtr7Error } from "../../lib/errors.js";

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

/** Replaces `name` in the boot partition with `data`, then flushes the partition to disk. */
export async function writeBootFile(boot: string, name: string, data: Buffer): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), "rtr7-boot-"));
  try {
    const source = path.join(dir, name);
    await writeFile(source, data);
    await mcopy(["-n", "-o", "-i", boot, source, `::${name}`], `write ${name} to the boot partition ${boot}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const handle = await open(boot, "r+");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
