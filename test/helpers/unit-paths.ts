// A unit's paths as files in a scratch directory (process mode's layout):
// the boot partition, both root slots and the MBR as image files, and
// /perm, /etc/rtr7 and /run/rtr7 as directories, made here.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { UnitPaths } from "../../router/unit.js";

export async function fileBackedUnitPaths(dir: string): Promise<UnitPaths> {
  const paths: UnitPaths = {
    boot: path.join(dir, "boot.img"),
    roots: { a: path.join(dir, "root-a.img"), b: path.join(dir, "root-b.img") },
    mbr: path.join(dir, "disk-mbr.img"),
    perm: path.join(dir, "perm"),
    etc: path.join(dir, "etc"),
    run: path.join(dir, "run"),
  };
  for (const directory of [paths.perm, paths.etc, paths.run]) await mkdir(directory, { recursive: true });
  return paths;
}
