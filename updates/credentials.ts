// The password of a unit's update API, found where gokrazy's own tools keep
// it, so a workstation set up for gokrazy (or router7) needs nothing new:
// RTR7_PASSWORD first (for scripts and CI), then
// $XDG_CONFIG_HOME/gokrazy/hosts/<hostname>/http-password.txt, then
// $XDG_CONFIG_HOME/gokrazy/http-password.txt (~/.config without an absolute
// XDG_CONFIG_HOME). The result says where the password came from, never
// what it is, so callers can log it.
//
// A recovery provisions the unit with the same lookup (provisionUnitPassword):
// the unit gets the password safe-update would use for it. Only when the
// workstation has none is a new random one made, and it is written to the
// host's http-password.txt (0600) before the unit ever sees it, so a lost
// success report cannot lose it. An existing file is never overwritten: the
// new file is linked into place, which fails if one appeared meanwhile, and
// then that one is used.
import { randomBytes } from "node:crypto";
import { link, mkdir, open, readFile, unlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { syncDirectory, temporaryPathFor } from "../lib/atomic-file.js";
import { Rtr7Error, describeError, isRtr7Error } from "../lib/errors.js";

export interface UpdatePassword {
  password: string;
  /** Where it came from: "RTR7_PASSWORD" or a file's path. */
  source: string;
}

/** The directory gokrazy's tools keep their configuration in. */
export function gokrazyConfigDir(env: NodeJS.ProcessEnv = process.env, home = os.homedir()): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(home, ".config");
  return path.join(base, "gokrazy");
}

/** gokrazy's file for one host's password. */
export function hostPasswordFile(
  hostname: string,
  env: NodeJS.ProcessEnv = process.env,
  home = os.homedir(),
): string {
  return path.join(gokrazyConfigDir(env, home), "hosts", hostname, "http-password.txt");
}

export async function updatePassword(
  hostname: string,
  env: NodeJS.ProcessEnv = process.env,
  home = os.homedir(),
): Promise<UpdatePassword> {
  const fromEnv = env.RTR7_PASSWORD;
  if (fromEnv !== undefined && fromEnv !== "") return { password: fromEnv, source: "RTR7_PASSWORD" };

  const config = gokrazyConfigDir(env, home);
  const files = [hostPasswordFile(hostname, env, home), path.join(config, "http-password.txt")];
  const looked: string[] = [`RTR7_PASSWORD (${fromEnv === undefined ? "not set" : "empty"})`];
  for (const file of files) {
    let content: string;
    try {
      content = await readFile(file, "utf8");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      looked.push(`${file} (${code === "ENOENT" ? "no such file" : `unreadable: ${code ?? String(error)}`})`);
      continue;
    }
    const password = content.replace(/\r?\n$/, "");
    if (password === "") {
      looked.push(`${file} (empty)`);
      continue;
    }
    return { password, source: file };
  }
  throw new Rtr7Error(
    "RTR7_ERR_PASSWORD_MISSING",
    `no update API password for ${hostname}: looked at ${looked.join(", ")}`,
    {
      hint: `Copy the unit's /perm/gokr-pw.txt to ${files[0] ?? "the host's http-password.txt"}, or set RTR7_PASSWORD.`,
    },
  );
}

export interface ProvisionedPassword extends UpdatePassword {
  /** True when the workstation had none: this call made it and wrote `source`. */
  created: boolean;
}

/** 18 random bytes as 24 base64url characters: nothing to quote in a URL, a shell or a file. */
export function newUnitPassword(random: (size: number) => Buffer = randomBytes): string {
  return random(18).toString("base64url");
}

/**
 * The password a recovery gives the unit `hostname`: the workstation's
 * (updatePassword's lookup), else a new one written to the host's
 * http-password.txt (0600; its directories 0700 when made).
 */
export async function provisionUnitPassword(
  hostname: string,
  env: NodeJS.ProcessEnv = process.env,
  home = os.homedir(),
  random: (size: number) => Buffer = randomBytes,
): Promise<ProvisionedPassword> {
  try {
    return { ...(await updatePassword(hostname, env, home)), created: false };
  } catch (error) {
    if (!isRtr7Error(error) || error.code !== "RTR7_ERR_PASSWORD_MISSING") throw error;
  }
  const file = hostPasswordFile(hostname, env, home);
  const password = newUnitPassword(random);
  const temporary = temporaryPathFor(file);
  try {
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const handle = await open(temporary, "wx", 0o600);
    try {
      await handle.writeFile(password + "\n");
      await handle.chmod(0o600);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(temporary, file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      // Written meanwhile (an empty file, or another rtr7): never overwritten.
      const theirs = (await readFile(file, "utf8")).replace(/\r?\n$/, "");
      if (theirs === "")
        throw new Error(`${file} exists but is empty; put the unit's password in it or remove it`, {
          cause: error,
        });
      return { password: theirs, source: file, created: false };
    }
    await unlink(temporary);
    await syncDirectory(path.dirname(file));
    return { password, source: file, created: true };
  } catch (cause) {
    throw new Rtr7Error(
      "RTR7_ERR_PASSWORD_MISSING",
      `keep a new password for ${hostname} in ${file}: ${describeError(cause)}`,
      {
        cause,
        hint: `Make ${path.dirname(file)} writable, or put a password in ${file} (or RTR7_PASSWORD) before recovering.`,
      },
    );
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}
