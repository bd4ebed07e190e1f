// The password of a unit's update API, found where gokrazy's own tools keep
// it, so a workstation set up for gokrazy (or router7) needs nothing new:
// RTR7_PASSWORD first (for scripts and CI), then
// $XDG_CONFIG_HOME/gokrazy/hosts/<hostname>/http-password.txt, then
// $XDG_CONFIG_HOME/gokrazy/http-password.txt (~/.config without an absolute
// XDG_CONFIG_HOME). The result says where the password came from, never
// what it is, so callers can log it.
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Rtr7Error } from "../lib/errors.js";

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

export async function updatePassword(
  hostname: string,
  env: NodeJS.ProcessEnv = process.env,
  home = os.homedir(),
): Promise<UpdatePassword> {
  const fromEnv = env.RTR7_PASSWORD;
  if (fromEnv !== undefined && fromEnv !== "") return { password: fromEnv, source: "RTR7_PASSWORD" };

  const config = gokrazyConfigDir(env, home);
  const files = [
    path.join(config, "hosts", hostname, "http-password.txt"),
    path.join(config, "http-password.txt"),
  ];
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
