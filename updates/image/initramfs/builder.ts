// Builds the recovery initramfs that `rtr7 recover` serves: the bundled
// recovery-init as /rtr7-recovery-init (run by /bin/node through its
// shebang), node and mke2fs with their libraries, static busybox, the disk,
// NIC and file-system modules of the unit's kernel in load order, and a few
// empty mount points. A build is keyed by a hash of everything it contains
// and kept in a cache directory, so recovering again costs one hash pass
// instead of a 40 MB gzip.
import { mkdir, readdir, realpath, rm, stat } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { createGzip } from "node:zlib";
import { writeAtomicallyWith } from "../../../lib/atomic-file.js";
import { Rtr7Error, isRtr7Error } from "../../../lib/errors.js";
import { formatBytes, silentLogger, type Logger } from "../../../lib/log.js";
import { bundleRecoveryInit, initInterpreter, nodeFacts, type BundleFormat } from "./bundle.js";
import { cpioArchive, type CpioEntry } from "./cpio.js";
import { sharedLibraries } from "./elf-deps.js";
import { kernelRelease } from "./kernel-release.js";
import { recoveryModuleClosure, type ResolvedModules } from "./kernel-modules.js";
import { InitramfsTree, treeDigest } from "./tree.js";
import { buildInfoPath, modulesListPath, recoveryInitPath } from "../../../lib/wire/image-paths.js";
import { addModules } from "../modules.js";

/** Bump when the layout changes in a way the hashed inputs do not show. */
export const builderVersion = "1";

/** Paths inside the initramfs that recovery-init relies on. */
export const initramfsPaths = {
  init: recoveryInitPath,
  node: initInterpreter,
  busybox: "/bin/busybox",
  mke2fs: "/sbin/mke2fs",
  /** Module files to insmod, one absolute path per line, in load order. */
  modulesList: modulesListPath,
  buildInfo: buildInfoPath,
} as const;

const emptyDirectories = ["/proc", "/sys", "/dev", "/tmp", "/perm", "/mnt", "/etc", "/run"];

export interface RecoveryInitramfsOptions {
  /** The unit's kernel, /boot/vmlinuz-<release>; its release picks the modules. */
  kernel: string;
  /** Default /lib/modules/<release of the kernel>. */
  modulesDir?: string;
  /** Compiled recovery-init entry to bundle; default dist/recovery-init/main.js. */
  entry?: string;
  /** Default $XDG_CACHE_HOME/rtr7/initramfs, else ~/.cache/rtr7/initramfs. */
  cacheDir?: string;
  log?: Logger;
  /** The node that goes into the initramfs; default the running one. */
  node?: string;
  /** A static busybox; default /bin/busybox (Debian's busybox-static). */
  busybox?: string;
  /** Default /sbin/mke2fs (e2fsprogs). */
  mke2fs?: string;
}

export interface RecoveryInitramfs {
  /** The gzip-compressed newc cpio archive, in the cache directory. */
  path: string;
  /** True when an earlier build with the same inputs was reused. */
  cached: boolean;
  bytes: number;
  /** SHA-256 (hex) over every entry's path, mode and content. */
  inputHash: string;
}

/** What a build would contain, worked out without writing the archive. */
export interface RecoveryInitramfsPlan {
  kernelRelease: string;
  modulesDir: string;
  nodeVersion: string;
  bundleFormat: BundleFormat;
  modules: ResolvedModules;
  inputHash: string;
  /** The archive's entries, /etc/rtr7/build.json included. */
  entries: CpioEntry[];
  /** Where the archive is (or will be) cached. */
  path: string;
}

/** $XDG_CACHE_HOME/rtr7/initramfs, or ~/.cache/rtr7/initramfs. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  const xdg = env.XDG_CACHE_HOME;
  // The XDG spec says a relative value is invalid and must be ignored.
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(home, ".cache");
  return path.join(base, "rtr7", "initramfs");
}

/** dist/recovery-init/main.js, next to this compiled module's folder. */
export function defaultEntry(): string {
  return fileURLToPath(new URL("../../../recovery-init/main.js", import.meta.url));
}

/** `hostPath` (resolved) at `destination`, mode 0755, and its shared libraries at their host paths. */
export async function binaryWithLibraries(
  tree: InitramfsTree,
  destination: string,
  hostPath: string,
): Promise<void> {
  let real: string;
  try {
    real = await realpath(hostPath);
  } catch (cause) {
    throw new Rtr7Error("RTR7_ERR_TOOL_MISSING", `put ${hostPath} into the initramfs: no such file`, {
      cause,
    });
  }
  tree.hostFile(destination, real, 0o755);
  for (const library of await sharedLibraries(real)) await tree.mirrorHostFile(library);
}

export async function planRecoveryInitramfs(
  options: RecoveryInitramfsOptions,
): Promise<RecoveryInitramfsPlan> {
  const log = (options.log ?? silentLogger()).child({ subsystem: "initramfs" });
  const release = await kernelRelease(options.kernel);
  const modulesDir = options.modulesDir ?? path.join("/lib/modules", release);
  if (path.basename(path.resolve(modulesDir)) !== release) {
    // insmod refuses modules built for another kernel (vermagic), on the unit.
    log.warn(
      { kernel: release, modulesDir },
      `The modules in ${modulesDir} may not be for kernel ${release}; the unit will refuse them if not.`,
    );
  }
  const node = options.node ?? process.execPath;
  const cacheDir = options.cacheDir ?? defaultCacheDir();

  const [facts, modules] = await Promise.all([nodeFacts(node), recoveryModuleClosure(modulesDir, log)]);
  const bundleFormat: BundleFormat = facts.runsExtensionlessEsm ? "esm" : "cjs";
  const bundle = await bundleRecoveryInit(options.entry ?? defaultEntry(), bundleFormat);

  const tree = new InitramfsTree();
  for (const directory of emptyDirectories) tree.directory(directory);
  tree.data(initramfsPaths.init, bundle, 0o755);
  await binaryWithLibraries(tree, initramfsPaths.node, node);
  await binaryWithLibraries(tree, initramfsPaths.busybox, options.busybox ?? "/bin/busybox");
  await binaryWithLibraries(tree, initramfsPaths.mke2fs, options.mke2fs ?? "/sbin/mke2fs");
  // Without it mke2fs falls back to its compiled-in defaults; with it, a
  // /perm made on the unit matches one made on this workstation.
  try {
    tree.hostFile("/etc/mke2fs.conf", await realpath("/etc/mke2fs.conf"), 0o644);
  } catch {
    log.debug("No /etc/mke2fs.conf here; mke2fs on the unit uses its built-in defaults.");
  }
  addModules(tree, modules, modulesDir, release);

  const contents = tree.entries();
  const inputHash = await treeDigest(contents, { builderVersion, kernelRelease: release, bundleFormat });
  const buildInfo = {
    inputHash,
    kernelVersion: release,
    nodeVersion: facts.version,
    builderVersion,
    bundleFormat,
    modules: modules.load.length,
  };
  tree.data(initramfsPaths.buildInfo, Buffer.from(JSON.stringify(buildInfo, null, 2) + "\n"));
  log.debug(
    { kernel: release, modules: modules.load.length, skipped: modules.skipped, inputHash },
    `Recovery initramfs for kernel ${release}: ${modules.load.length} modules, input hash ${inputHash.slice(0, 12)}.`,
  );
  return {
    kernelRelease: release,
    modulesDir,
    nodeVersion: facts.version,
    bundleFormat,
    modules,
    inputHash,
    entries: tree.entries(),
    path: path.join(cacheDir, `rtr7-recovery-${release}-${inputHash.slice(0, 16)}.cpio.gz`),
  };
}

/** A build killed mid-write leaves its temporary file; clear those older than an hour. */
async function removeStaleTemporaries(cacheDir: string, now: number): Promise<void> {
  for (const name of await readdir(cacheDir)) {
    if (!name.startsWith(".") || !name.includes(".tmp-")) continue;
    const file = path.join(cacheDir, name);
    const info = await stat(file).catch(() => undefined);
    if (info && now - info.mtimeMs > 60 * 60 * 1000) await rm(file, { force: true });
  }
}

/** Writes `entries` as gzip'd cpio to `target`, atomically (lib/atomic-file.ts: `.NAME.tmp-*` while it runs). */
async function writeAtomically(target: string, entries: CpioEntry[]): Promise<void> {
  await writeAtomicallyWith(target, (handle) =>
    pipeline(Readable.from(cpioArchive(entries)), createGzip(), async (gzipped: AsyncIterable<Buffer>) => {
      for await (const chunk of gzipped) await handle.writeFile(chunk);
    }),
  );
}

export async function buildRecoveryInitramfs(options: RecoveryInitramfsOptions): Promise<RecoveryInitramfs> {
  const log = (options.log ?? silentLogger()).child({ subsystem: "initramfs" });
  const started = Date.now();
  const plan = await planRecoveryInitramfs(options);
  const cached = await stat(plan.path).catch(() => undefined);
  if (cached?.isFile()) {
    log.info(
      { path: plan.path, bytes: cached.size, inputHash: plan.inputHash },
      `Using the cached recovery initramfs ${plan.path} (${formatBytes(cached.size)}).`,
    );
    return { path: plan.path, cached: true, bytes: cached.size, inputHash: plan.inputHash };
  }

  const cacheDir = path.dirname(plan.path);
  log.info(
    { kernel: plan.kernelRelease, modules: plan.modules.load.length },
    `Building the recovery initramfs for kernel ${plan.kernelRelease} with node ${plan.nodeVersion} ` +
      `and ${plan.modules.load.length} kernel modules.`,
  );
  try {
    await mkdir(cacheDir, { recursive: true });
    await removeStaleTemporaries(cacheDir, Date.now());
    await writeAtomically(plan.path, plan.entries);
  } catch (cause) {
    if (isRtr7Error(cause)) throw cause;
    throw new Rtr7Error("RTR7_ERR_INITRAMFS_BUILD", `write the recovery initramfs to ${cacheDir}: failed`, {
      cause,
    });
  }
  const bytes = (await stat(plan.path)).size;
  log.info(
    { path: plan.path, bytes, inputHash: plan.inputHash, ms: Date.now() - started },
    `Wrote the recovery initramfs ${plan.path} (${formatBytes(bytes)}) in ${((Date.now() - started) / 1000).toFixed(1)} s.`,
  );
  return { path: plan.path, cached: false, bytes, inputHash: plan.inputHash };
}
