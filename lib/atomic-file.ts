// Writing a state file so that a crash or a power cut leaves either the old
// content or the new, never a torn file: write a temporary file beside it,
// fsync it, rename it over the target, then fsync the directory so the new
// name itself is durable. Used for every small state file rtr7 keeps (the
// unit's slot and trial records, supervisor status, a run's run.json and
// recover.bash, interfaces.json).
import { mkdir, open, rename, unlink } from "node:fs/promises";
import path from "node:path";

/** fsync on the directory, so a new name in it survives a power cut. */
export async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function writeFileAtomically(
  file: string,
  content: string | Uint8Array,
  options: { mode?: number; makeDirectory?: boolean } = {},
): Promise<void> {
  const directory = path.dirname(file);
  if (options.makeDirectory) await mkdir(directory, { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    const handle = await open(temporary, "w", options.mode ?? 0o644);
    try {
      await handle.writeFile(content);
      // open()'s mode is masked by the umask; the file must have exactly this one.
      if (options.mode !== undefined) await handle.chmod(options.mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
  await syncDirectory(directory);
}
