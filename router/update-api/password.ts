// The update API's password, kept where gokrazy keeps it: /perm/gokr-pw.txt,
// the file's content with surrounding whitespace (the trailing newline)
// trimmed, as gokrazy's tools trim the workstation's http-password.txt. A unit
// without one gets a random password on first start, written 0600 and
// atomically: a hidden temporary file (lib/atomic-file.ts names it), fsync,
// then link(2), which fails if another process created the file meanwhile,
// so two first starts agree on one password, then an fsync of /perm so the
// new name survives a power cut. An empty file (no password: a person made
// it) is replaced by rename(2) instead, so a cut leaves the empty file or
// the new password, never no file. The supervisor prints the password on
// the console once, when `created` is true.
import { randomBytes } from "node:crypto";
import { link, mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { syncDirectory, temporaryPathFor } from "../../lib/atomic-file.js";
import { Rtr7Error, describeError } from "../../lib/errors.js";

export const passwordFileName = "gokr-pw.txt";

export interface PasswordResult {
  password: string;
  /** True when no usable password file existed and this call wrote one. */
  created: boolean;
}

/** 18 random bytes → 24 base64url characters: no characters that need quoting in a URL or a shell. */
export function randomPassword(random: (size: number) => Buffer = randomBytes): string {
  return random(18).toString("base64url");
}

export async function readOrCreatePassword(
  permDir: string,
  random: (size: number) => Buffer = randomBytes,
): Promise<PasswordResult> {
  const file = path.join(permDir, passwordFileName);
  const existing = await readPasswordFile(file);
  if (existing !== undefined && existing !== "") return { password: existing, created: false };

  const password = randomPassword(random);
  const temporary = temporaryPathFor(file);
  try {
    await mkdir(permDir, { recursive: true });
    const handle = await open(temporary, "wx", 0o600);
    try {
      await handle.writeFile(password + "\n");
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (existing === "") {
      // An empty file holds no usable password: replace it in one step.
      await rename(temporary, file);
    } else {
      try {
        await link(temporary, file);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
        // Another process wrote one first: use it.
        const theirs = await readPasswordFile(file);
        if (theirs) return { password: theirs, created: false };
        throw error;
      }
      // Drop the second name before the sync, so one directory fsync makes both durable.
      await unlink(temporary);
    }
    await syncDirectory(permDir);
    return { password, created: true };
  } catch (cause) {
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_WRITE",
      `write the update API password ${file}: ${describeError(cause)}`,
      {
        cause,
        hint: "Check that /perm is mounted read-write and has room (df -h /perm).",
      },
    );
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

async function readPasswordFile(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, "utf8")).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Rtr7Error(
      "RTR7_ERR_FILE_MISSING",
      `read the update API password ${file}: ${describeError(error)}`,
      {
        cause: error,
        hint: "Check that /perm is mounted and the file is readable, or remove it to have a new password made.",
      },
    );
  }
}
