// The workstation's kernel, the default for the unit's kernel: the newest
// /boot/vmlinuz-* by version order, as a workstation running Debian has it.
import { readdirSync } from "node:fs";
import path from "node:path";
import { Rtr7Error } from "./errors.js";

/** The newest kernel in bootDir by version order of its vmlinuz-<version> name. */
export function newestKernel(bootDir = "/boot"): string {
  let names: string[] = [];
  try {
    names = readdirSync(bootDir).filter((name) => name.startsWith("vmlinuz-"));
  } catch {
    // reported below
  }
  const newest = names.sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).pop();
  if (newest === undefined) {
    throw new Rtr7Error(
      "RTR7_ERR_FILE_MISSING",
      `no kernel named and no ${bootDir}/vmlinuz-* to default to`,
      {
        hint: "Pass --kernel PATH, or install a kernel (apt-get install linux-image-amd64).",
      },
    );
  }
  return path.join(bootDir, newest);
}
