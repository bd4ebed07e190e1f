// Turns the image flags of `rtr7 recover` into the files a recovery serves:
// the three images, named one by one or found in --image-dir (with an
// optional backup.tar.gz there). The messages name the flags, so this lives
// in cli/; server/recover.ts takes the resolved paths.
import { existsSync } from "node:fs";
import path from "node:path";
import { Rtr7Error } from "../lib/errors.js";
import type { RecoveryImages } from "../server/recover.js";
import { imageFiles, imageNames } from "../lib/wire/images.js";

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
    const missing = imageNames.filter((name) => !existsSync(inDir(name)));
    if (missing.length > 0) {
      throw new Rtr7Error(
        "RTR7_ERR_FILE_MISSING",
        `--image-dir ${args.imageDir}: missing ${missing.join(", ")} (want mbr.img, boot.img, root.img and optionally backup.tar.gz)`,
      );
    }
    const backup = args.backup ?? (existsSync(inDir("backup.tar.gz")) ? inDir("backup.tar.gz") : undefined);
    return {
      mbr: args.mbr ?? inDir(imageFiles.mbr),
      boot: args.boot ?? inDir(imageFiles.boot),
      root: args.root ?? inDir(imageFiles.root),
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
