// Writing a state file so that a crash or a power cut leaves either the old
// content or the new, never a torn file: write a temporary file beside it,
// fsync it, rename it over the target, then fsync the directory so the new
// name itself is durable. Used for every small state file rtr7 keeps (the
// unit's slot and trial records, supervisor status, a run's run.json and
// recover.bash, interfaces.json). The temporary file is created exclusively
// (O_CREAT|O_EXCL, which also refuses a symlink planted at its name) under a
// random name: on a unit every program runs as root, and the PID of init is
// 1, so a name built from the PID alone is predictable.
import { randomBytes } from "node:crypto";
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
  const temporary = `${file}.${randomBytes(8).toString("hex")}.tmp`;
  let created = false;
  try {
    const handle = await open(temporary, "wx", options.mode ?? 0o644);
    created = true;
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
    // Remove only what this call created: never a file someone put at the name.
    if (created) await unlink(temporary).catch(() => undefined);
    throw error;
  }
  await syncDirectory(directory);
}
