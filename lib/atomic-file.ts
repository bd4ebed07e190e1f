// Writing a file so that a crash or a power cut leaves either the old
// content or the new, never a torn file: write a temporary file beside it,
// fsync it, rename it over the target, then fsync the directory so the new
// name itself is durable. Every file rtr7 replaces goes through here: the
// unit's slot and trial records, supervisor status, a run's run.json and
// recover.bash, interfaces.json (on the unit and during a recovery), the
// built images and their manifest, the cached recovery initramfs. (The
// update API's password is the exception: it is linked into place, so that
// of two first starts only one creates it; it still takes its temporary
// name from here.) A removal that must survive a cut (the trial record's)
// goes through removeDurably: unlink, then fsync the directory. The
// temporary file is created exclusively (O_CREAT|O_EXCL, which also refuses
// a symlink planted at its name) under a random name: on a unit every
// program runs as root, and the PID of init is 1, so a name built from the
// PID alone is predictable. It is hidden and named `.NAME.tmp-PID-RANDOM`,
// so a directory's leftovers of a killed writer are easy to find; a
// leftover never stands in the way of the next write, which picks a new
// name. What this relies on from the file system (on a unit, /perm's ext4
// with its journal, mounted data=ordered with barriers on): rename(2),
// link(2) and unlink(2) are atomic and, once the directory is fsynced,
// durable; fsync returns only once the data is on the disk's stable
// storage, past its write cache.
import { randomBytes } from "node:crypto";
import { mkdir, open, rename, unlink, type FileHandle } from "node:fs/promises";
import path from "node:path";

/** The hidden, random temporary name beside `file` that a write of it goes through. */
export function temporaryPathFor(file: string): string {
  return path.join(
    path.dirname(file),
    `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(8).toString("hex")}`,
  );
}

/** fsync on the directory, so a new name in it (or a name gone from it) survives a power cut. */
export async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Puts a finished file in place of `file`: fsyncs it, renames it over
 * `file` and fsyncs the directory. Both must be on one file system (a
 * build's work directory beside its output, say).
 */
export async function commitFile(finished: string, file: string): Promise<void> {
  const handle = await open(finished, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(finished, file);
  await syncDirectory(path.dirname(file));
}

export interface AtomicWriteOptions {
  /** The file's mode, exactly (open()'s mode is masked by the umask; this is not). */
  mode?: number;
  makeDirectory?: boolean;
}

/**
 * Replaces `file` with what `write` puts into the temporary file through
 * the handle it is given (`handle.writeFile(chunk)` for each chunk of a
 * stream: the handle stays open for the fsync, so it is not piped into a
 * write stream that would close it). On any failure the temporary file is
 * removed and `file` keeps its old content.
 */
export async function writeAtomicallyWith(
  file: string,
  write: (handle: FileHandle) => Promise<void>,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const directory = path.dirname(file);
  if (options.makeDirectory) await mkdir(directory, { recursive: true });
  const temporary = temporaryPathFor(file);
  let created = false;
  try {
    const handle = await open(temporary, "wx", options.mode ?? 0o644);
    created = true;
    try {
      await write(handle);
      if (options.mode !== undefined) await handle.chmod(options.mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (error) {
    // Remove only what this call created: never a file someone put at the name.
    if (created) await unlink(temporary).catch(() => undefined);
    throw error;
  }
  await syncDirectory(directory);
}

export async function writeFileAtomically(
  file: string,
  content: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  await writeAtomicallyWith(file, (handle) => handle.writeFile(content), options);
}

/**
 * Removes `file` so that the removal survives a power cut: unlink, then
 * fsync the directory. The directory is synced even when the file was
 * already gone, since an earlier removal killed before its sync may still
 * be only in memory. A missing file or directory is no error. Resolves to
 * whether this call removed the file.
 */
export async function removeDurably(file: string): Promise<boolean> {
  let removed = true;
  try {
    await unlink(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    removed = false;
  }
  try {
    await syncDirectory(path.dirname(file));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  return removed;
}
