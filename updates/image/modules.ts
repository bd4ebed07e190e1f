// The kernel modules a unit loads before anything else (disk, NIC and file
// system drivers: Debian's kernel has virtio_blk, ata and squashfs as
// modules), placed in an image tree exactly as the recovery initramfs places
// them: each file under /lib/modules/<release>/, and /etc/rtr7/modules
// listing their paths inside the image in load order, for busybox insmod.
import path from "node:path";
import type { ResolvedModules } from "./initramfs/kernel-modules.js";
import type { InitramfsTree } from "./initramfs/tree.js";
import { modulesListPath } from "../../lib/wire/image-paths.js";

/** Where the load-order list is, in the boot initrd and in root.img alike. */
export { modulesListPath };

/** Adds the module files and the list to `tree`; returns the paths inside, in load order. */
export function addModules(
  tree: InitramfsTree,
  modules: ResolvedModules,
  modulesDir: string,
  release: string,
): string[] {
  const files = modules.load.map((module) => ({
    inside: path.isAbsolute(module.path)
      ? module.path
      : path.posix.join("/lib/modules", release, module.path),
    source: path.resolve(modulesDir, module.path),
  }));
  for (const file of files) tree.hostFile(file.inside, file.source, 0o644);
  tree.data(modulesListPath, Buffer.from(files.map((file) => file.inside + "\n").join("")));
  return files.map((file) => file.inside);
}
