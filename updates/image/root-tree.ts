// What root.img holds, as a file tree: the unit's program (/rtr7/init, the
// bundled router suite run by /bin/node), node and the host tools the suite
// runs (busybox, mtools for the FAT boot partition, kexec) with their shared
// libraries at their host paths, the kernel modules, /etc/rtr7 (modules
// list, build.json, diagd.json), empty mount points, and every --add. The
// paths are a contract: the supervisor and the update API look for them.
import { readdir } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error, isRtr7Error } from "../../lib/errors.js";
import { binaryWithLibraries } from "./initramfs/builder.js";
import type { CpioEntry } from "./initramfs/cpio.js";
import type { ResolvedModules } from "./initramfs/kernel-modules.js";
import { InitramfsTree } from "./initramfs/tree.js";
import { addModules, modulesListPath } from "./modules.js";

/** Paths inside root.img that other parts of rtr7 rely on. */
export const rootImagePaths = {
  init: "/rtr7/init",
  node: "/bin/node",
  busybox: "/bin/busybox",
  shell: "/bin/sh",
  mtools: "/usr/bin/mtools",
  /** mtools is one binary that acts by the name it is called with. */
  mtoolsCommands: ["/usr/bin/mcopy", "/usr/bin/mtype", "/usr/bin/mdir", "/usr/bin/mmd"],
  kexec: "/usr/sbin/kexec",
  modulesList: modulesListPath,
  buildInfo: "/etc/rtr7/build.json",
  diagdConfig: "/etc/rtr7/diagd.json",
} as const;

/** Mount points and places the unit fills at run time. */
export const rootEmptyDirectories = [
  "/proc",
  "/sys",
  "/dev",
  "/tmp",
  "/perm",
  "/run",
  "/boot",
  "/mnt",
  "/etc",
  "/root",
] as const;

/**
 * /etc/rtr7/build.json: what the image is. No build time, so equal inputs
 * give equal bytes. A per-host build names its hostname; a fleet release
 * says anyUnit instead, and the unit takes its name from /perm/hostname.
 */
export type RootBuildInfo = ({ hostname: string; anyUnit?: never } | { anyUnit: true; hostname?: never }) & {
  version: string;
  kernelRelease: string;
  nodeVersion: string;
  builderVersion: string;
};

export interface RootTreeInputs {
  /** The bundled router suite, `#!/bin/node` first. */
  init: Buffer;
  /** Host paths of the programs that go in. */
  node: string;
  busybox: string;
  mtools: string;
  kexec: string;
  modules: ResolvedModules;
  modulesDir: string;
  kernelRelease: string;
  /** The entries of every --add, in order. */
  additions: { label: string; entries: CpioEntry[] }[];
}

const defaultDiagdConfig = Buffer.from(JSON.stringify({ tcp: [] }) + "\n");

function relative(entryPath: string): string {
  return entryPath.replace(/^\/+/, "");
}

/** The root tree without build.json (whose version may be derived from this tree). */
export async function rootTree(inputs: RootTreeInputs): Promise<InitramfsTree> {
  const tree = new InitramfsTree();
  for (const directory of rootEmptyDirectories) tree.directory(directory);
  tree.data(rootImagePaths.init, inputs.init, 0o755);
  await binaryWithLibraries(tree, rootImagePaths.node, inputs.node);
  await binaryWithLibraries(tree, rootImagePaths.busybox, inputs.busybox);
  tree.symlink(rootImagePaths.shell, "busybox");
  await binaryWithLibraries(tree, rootImagePaths.mtools, inputs.mtools);
  for (const command of rootImagePaths.mtoolsCommands) tree.symlink(command, "mtools");
  await addCodepageModules(tree);
  await binaryWithLibraries(tree, rootImagePaths.kexec, inputs.kexec);
  addModules(tree, inputs.modules, inputs.modulesDir, inputs.kernelRelease);

  const added = inputs.additions.flatMap((addition) => addition.entries);
  if (!added.some((entry) => relative(entry.path) === relative(rootImagePaths.diagdConfig))) {
    tree.data(rootImagePaths.diagdConfig, defaultDiagdConfig);
  }
  addAdditions(tree, inputs.additions);
  return tree;
}

/**
 * mtools converts FAT names to and from DOS code page 850 through glibc's
 * iconv, which loads the converter from glibc's gconv directory at run
 * time; without it every mcopy on the unit fails ("Error converting to
 * codepage 850"). The cache, the module lists and the two DOS code pages.
 */
async function addCodepageModules(tree: InitramfsTree): Promise<void> {
  const candidates = ["/usr/lib/x86_64-linux-gnu/gconv", "/usr/lib64/gconv", "/usr/lib/gconv"];
  for (const directory of candidates) {
    let names: string[];
    try {
      names = await readdir(directory);
    } catch {
      continue;
    }
    const wanted = names.filter((name) => /^(gconv-modules(\.cache)?|IBM850\.so|IBM437\.so)$/.test(name));
    for (const name of wanted) await tree.mirrorHostFile(path.join(directory, name));
    const listDirectory = path.join(directory, "gconv-modules.d");
    for (const name of await readdir(listDirectory).catch(() => [] as string[])) {
      if (name.endsWith(".conf")) await tree.mirrorHostFile(path.join(listDirectory, name));
    }
    return;
  }
  throw new Rtr7Error(
    "RTR7_ERR_IMAGE_BUILD",
    `build root.img: glibc's gconv directory (${candidates.join(", ")}) is missing; mtools on the unit needs its DOS code page converters`,
  );
}

/** Puts --add entries in; a directory that exists is merged, any other clash is an error. */
function addAdditions(tree: InitramfsTree, additions: RootTreeInputs["additions"]): void {
  const existing = new Map(tree.entries().map((entry) => [entry.path, entry]));
  for (const { label, entries } of additions) {
    for (const entry of entries) {
      const key = relative(entry.path);
      // build.json is added last (its version may hash this tree) but is taken all the same.
      const present =
        key === relative(rootImagePaths.buildInfo) ? { kind: "file" as const } : existing.get(key);
      if (entry.kind === "directory" && present?.kind === "directory") continue;
      if (present) {
        throw new Rtr7Error(
          "RTR7_ERR_IMAGE_BUILD",
          `--add ${label}: /${key} is already in the image (${present.kind}); an --add may not replace it`,
          { hint: "Choose another destination, or drop the --add that clashes." },
        );
      }
      try {
        tree.add(entry);
        existing.set(key, entry);
      } catch (cause) {
        if (!isRtr7Error(cause, "RTR7_ERR_INTERNAL")) throw cause;
        throw new Rtr7Error("RTR7_ERR_IMAGE_BUILD", `--add ${label}: ${cause.message}`, { cause });
      }
    }
  }
  try {
    tree.entries();
  } catch (cause) {
    if (!isRtr7Error(cause, "RTR7_ERR_INTERNAL")) throw cause;
    throw new Rtr7Error("RTR7_ERR_IMAGE_BUILD", `--add: ${cause.message}`, { cause });
  }
}

/** Adds /etc/rtr7/build.json. */
export function addBuildInfo(tree: InitramfsTree, info: RootBuildInfo): void {
  const ordered: RootBuildInfo = {
    ...(info.hostname !== undefined ? { hostname: info.hostname } : { anyUnit: true as const }),
    version: info.version,
    kernelRelease: info.kernelRelease,
    nodeVersion: info.nodeVersion,
    builderVersion: info.builderVersion,
  };
  tree.data(rootImagePaths.buildInfo, Buffer.from(JSON.stringify(ordered, null, 2) + "\n"));
}
