// Writes an image's file tree (the same entries the initramfs builder
// archives) into a directory, for mksquashfs to read: directories, files with
// their modes and symlinks. mksquashfs then sets owners and times itself
// (-all-root, -all-time), so only content, modes and link targets matter.
import { chmod, copyFile, mkdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import type { CpioEntry } from "./initramfs/cpio.js";

/** Creates every entry under `root` (which must exist and be empty); entries come parents first. */
export async function stageTree(root: string, entries: readonly CpioEntry[]): Promise<void> {
  const directories: { at: string; mode: number }[] = [];
  for (const entry of entries) {
    const at = path.join(root, entry.path);
    if (entry.kind === "directory") {
      await mkdir(at, { recursive: true });
      directories.push({ at, mode: entry.mode ?? 0o755 });
    } else if (entry.kind === "symlink") {
      await symlink(entry.target, at);
    } else {
      if ("data" in entry) await writeFile(at, entry.data);
      else await copyFile(entry.source, at);
      // chmod after writing: the umask trims a mode given at creation.
      await chmod(at, entry.mode ?? 0o644);
    }
  }
  // Last, so a read-only directory mode cannot stop its own contents being written.
  for (const { at, mode } of directories.reverse()) await chmod(at, mode);
}
