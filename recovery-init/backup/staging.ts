// The staging directory of a backup restore. The backup is extracted into
// `<target>/.rtr7-restore-XXXXXX/new` (inside the target, so the same file
// system and renames are cheap), and only when every entry was accepted are its
// top-level entries renamed into the target, each replacing the entry of the
// same name, which is moved aside into `.../old` and removed at the end. A
// rejected or broken backup therefore leaves the target as it was. Top-level
// entries of the target that the backup does not have (lost+found) stay.
import { lstat, mkdir, mkdtemp, readdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error, describeError } from "../../lib/errors.js";

export const stagingPrefix = ".rtr7-restore-";

export class Staging {
  /** Set when a failed move could not be undone: the previous entries are in `old`. */
  private keep = false;

  private constructor(
    readonly target: string,
    readonly dir: string,
  ) {}

  /** Where the backup is extracted. */
  get newRoot(): string {
    return path.join(this.dir, "new");
  }

  /** Where replaced entries of the target wait until the restore is done. */
  get oldRoot(): string {
    return path.join(this.dir, "old");
  }

  static async create(target: string): Promise<Staging> {
    const dir = await mkdtemp(path.join(target, stagingPrefix));
    const staging = new Staging(target, dir);
    await mkdir(staging.newRoot, { mode: 0o700 });
    await mkdir(staging.oldRoot, { mode: 0o700 });
    return staging;
  }

  /** Staging directories left behind by restores that were killed, if any. */
  static async leftOver(target: string): Promise<string[]> {
    const names = await readdir(target);
    return names.filter((name) => name.startsWith(stagingPrefix)).map((name) => path.join(target, name));
  }

  /** Renames each top-level entry into the target; undoes the moves if one fails. */
  async moveIntoPlace(): Promise<void> {
    const moved: { name: string; replaced: boolean }[] = [];
    try {
      for (const name of await readdir(this.newRoot)) {
        const replaced = await exists(path.join(this.target, name));
        if (replaced) await rename(path.join(this.target, name), path.join(this.oldRoot, name));
        moved.push({ name, replaced });
        await rename(path.join(this.newRoot, name), path.join(this.target, name));
      }
    } catch (error) {
      const failed = `restore into ${this.target}: moving the restored entries into place failed (${describeError(error)})`;
      try {
        await this.undo(moved);
      } catch (undoError) {
        this.keep = true;
        throw new Rtr7Error(
          "RTR7_ERR_BACKUP_WRITE",
          `${failed}, and so did putting the previous entries back (${describeError(undoError)}): they are in ${this.oldRoot}`,
          { cause: error },
        );
      }
      throw new Rtr7Error("RTR7_ERR_BACKUP_WRITE", `${failed}; the previous entries were put back`, {
        cause: error,
      });
    }
  }

  /** Removes the staging directory (symlinks in it are removed, not followed). */
  async remove(): Promise<void> {
    if (!this.keep) await rm(this.dir, { recursive: true, force: true });
  }

  private async undo(moved: { name: string; replaced: boolean }[]): Promise<void> {
    for (const { name, replaced } of moved.reverse()) {
      if (!(await exists(path.join(this.newRoot, name))))
        await rename(path.join(this.target, name), path.join(this.newRoot, name));
      if (replaced) await rename(path.join(this.oldRoot, name), path.join(this.target, name));
    }
  }
}

async function exists(full: string): Promise<boolean> {
  try {
    await lstat(full);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}
