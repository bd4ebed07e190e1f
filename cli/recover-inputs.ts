// Turns the image flags of `rtr7 recover` into the files a recovery serves:
// the three images, named one by one or found in --image-dir (with an
// optional backup.tar.gz there, and the build's manifest.json, which says
// which unit the images are for). The messages name the flags, so this lives
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
    const manifest = inDir("manifest.json");
    return {
      ...(existsSync(manifest) ? { manifest } : {}),
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

/** The flags `rtr7 recover` takes from the unit's inventory entry when they are not given. */
export interface UnitDefaults {
  mac?: string;
  rebootor?: string;
  serial?: string;
  disk?: string;
}

const defaultedFlags = ["mac", "rebootor", "serial", "disk"] as const;

/**
 * The flags as given, each missing one filled from the inventory entry
 * (`rtr7 fleet add`), and the names of those that were.
 */
export function withInventoryDefaults(
  given: UnitDefaults,
  entry: UnitDefaults | undefined,
): { values: UnitDefaults; fromInventory: (keyof UnitDefaults)[] } {
  const values: UnitDefaults = { ...given };
  const fromInventory: (keyof UnitDefaults)[] = [];
  for (const flag of defaultedFlags) {
    if (values[flag] !== undefined) continue;
    const known = entry?.[flag];
    if (known === undefined) continue;
    values[flag] = known;
    fromInventory.push(flag);
  }
  return { values, fromInventory };
}
