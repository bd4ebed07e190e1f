// Turns what the user named on the command line into the files a recovery
// serves: the three images (named one by one or found in --image-dir, with
// an optional backup.tar.gz there) and the kernel (default: the newest
// /boot/vmlinuz-*, as a workstation running Debian has it).
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { Rtr7Error } from "../lib/errors.js";
import type { RecoveryImages } from "./recover.js";

export interface ImageArguments {
  imageDir?: string;
  mbr?: string;
  boot?: string;
  root?: string;
  backup?: string;
}

export function resolveRecoveryImages(args: ImageArguments): RecoveryImages {
  if (args.imageDir !== undefined) {
    const inDir = (name: string): string => path.join(args.imageDir as string, name);
    const missing = ["mbr.img", "boot.img", "root.img"].filter((name) => !existsSync(inDir(name)));
    if (missing.length > 0) {
      throw new Rtr7Error(
        "RTR7_ERR_FILE_MISSING",
        `--image-dir ${args.imageDir}: missing ${missing.join(", ")} (want mbr.img, boot.img, root.img and optionally backup.tar.gz)`,
      );
    }
    const backup = args.backup ?? (existsSync(inDir("backup.tar.gz")) ? inDir("backup.tar.gz") : undefined);
    return {
      mbr: args.mbr ?? inDir("mbr.img"),
      boot: args.boot ?? inDir("boot.img"),
      root: args.root ?? inDir("root.img"),
      ...(backup !== undefined ? { backup } : {}),
    };
  }
  const missing = (["mbr", "boot", "root"] as const).filter((flag) => args[flag] === undefined);
  if (missing.length > 0) {
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `missing ${missing.map((flag) => `--${flag}`).join(", ")}: name all three images, or a directory holding them with --image-dir`,
    );
  }
  return {
    mbr: args.mbr as string,
    boot: args.boot as string,
    root: args.root as string,
    ...(args.backup !== undefined ? { backup: args.backup } : {}),
  };
}

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
      `--kernel not given and no ${bootDir}/vmlinuz-* to default to`,
      {
        hint: "Pass --kernel PATH, or install a kernel (apt-get install linux-image-amd64).",
      },
    );
  }
  return path.join(bootDir, newest);
}
