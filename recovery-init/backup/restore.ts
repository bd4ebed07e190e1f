// Restores a backup of /perm (backupd's `/backup.tar.gz`: a gzip tar of
// regular files and directories) into a target directory, during a recovery.
// router7's restore trusted the tar, so a crafted or damaged backup could write
// anywhere; this one treats it as hostile input:
//
// - only regular files and directories; links, devices, FIFOs and anything
//   else are refused, as are absolute names, `..` components and names that
//   lead through a symlink (safe-paths.ts);
// - limits on the number of entries and on the bytes of file data, checked
//   against each header's declared size before its data is read, and on the
//   length of the decompressed stream (a gzip of zeros);
// - a corrupt, truncated or non-gzip stream is an error, not a partial restore
//   (tar-gz-entries.ts).
//
// The restore stops at the first refused entry or error. It extracts into a
// staging directory inside the target and moves the result into place only at
// the end (staging.ts), so a failed restore leaves the target as it was and
// nothing is ever written outside it. Kept: permission bits (not
// setuid/setgid/sticky: a backup arriving over the network must not be able
// to plant a setuid binary on /perm), owner and group (when running as root)
// and mtimes, directories' after their contents. Files are written and
// fsynced one by one with synchronous calls (see safe-paths.ts for why).
// Hand-written on top of tar-stream's parser because the policy above is the
// point of the module.
import type { Readable } from "node:stream";
import { closeSync, fchmodSync, fchownSync, fsyncSync, futimesSync, writeSync } from "node:fs";
import path from "node:path";
import type { Header } from "tar-stream";
import { Rtr7Error, isRtr7Error, describeError } from "../../lib/errors.js";
import { silentLogger, formatBytes, type Logger } from "../../lib/log.js";
import {
  DirectoriesBeneath,
  entryComponents,
  openDirectory,
  withDescriptor,
  type Refuse,
} from "./safe-paths.js";
import { Staging, stagingPrefix } from "./staging.js";
import { TarGzEntries, corruptError, type TarEntry } from "./tar-gz-entries.js";

export interface RestoreLimits {
  /** Most bytes of file data (sum of the files' sizes). Default 4 GiB. */
  maxBytes?: number;
  /** Most tar entries, directories included. Default 100 000. */
  maxEntries?: number;
}

export interface RestoreOptions {
  /** The gzip stream (`/backup.tar.gz` as downloaded). */
  source: Readable;
  /** The directory to restore into, e.g. /perm. It must exist. */
  target: string;
  limits?: RestoreLimits;
  log?: Logger;
  /** Called with the bytes of file data written so far, after each chunk. */
  onProgress?: (bytes: number) => void;
  /** What messages call the source; default "backup.tar.gz". */
  sourceName?: string;
}

export interface RestoreResult {
  files: number;
  directories: number;
  /** Bytes of file data written. */
  bytes: number;
}

export const defaultRestoreLimits = { maxBytes: 4 * 1024 ** 3, maxEntries: 100_000 } as const;

/** Headers, padding and long names allowed per entry on top of the file data. */
const tarOverheadPerEntry = 8 * 1024;

interface Metadata {
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
}

export async function restoreBackup(options: RestoreOptions): Promise<RestoreResult> {
  const log = (options.log ?? silentLogger()).child({ subsystem: "restore" });
  const target = path.resolve(options.target);
  let staging: Staging;
  try {
    for (const left of await Staging.leftOver(target))
      log.warn({ path: left }, `A killed restore left ${left} behind; remove it once you no longer need it.`);
    staging = await Staging.create(target);
  } catch (error) {
    throw writeError(`restore into ${target}: creating the staging directory failed`, error);
  }
  try {
    const result = await extractInto(staging.newRoot, options, log);
    await staging.moveIntoPlace();
    syncDirectory(target);
    log.info(
      { ...result, target },
      `Restored ${result.files} files and ${result.directories} directories (${formatBytes(result.bytes)}) into ${target}.`,
    );
    return result;
  } finally {
    await staging.remove();
  }
}

async function extractInto(root: string, options: RestoreOptions, log: Logger): Promise<RestoreResult> {
  const sourceName = options.sourceName ?? "backup.tar.gz";
  const maxBytes = options.limits?.maxBytes ?? defaultRestoreLimits.maxBytes;
  const maxEntries = options.limits?.maxEntries ?? defaultRestoreLimits.maxEntries;
  const maxTarBytes = maxBytes + (maxEntries + 2) * tarOverheadPerEntry + 1024 * 1024;
  const canChown = process.geteuid?.() === 0;
  const directories = new DirectoriesBeneath(root);
  const directoryMetadata = new Map<string, Metadata>();
  const result: RestoreResult = { files: 0, directories: 0, bytes: 0 };
  const tar = new TarGzEntries(options.source, sourceName, maxTarBytes);
  let entries = 0;

  const restoreEntry = async (entry: TarEntry): Promise<void> => {
    const header = entry.header;
    const index = ++entries;
    const entryName = `entry ${index} ${JSON.stringify(header.name)}`;
    const refuse: Refuse = (reason) => {
      throw new Rtr7Error("RTR7_ERR_BACKUP_REJECTED", `${sourceName}: ${entryName} rejected: ${reason}`);
    };
    if (index > maxEntries) refuse(`the backup has more than ${maxEntries} entries (limits.maxEntries)`);
    if (header.type !== "file" && header.type !== "directory") refuse(unsupportedType(header));
    const metadata = checkedMetadata(header, (reason) => {
      throw corruptError(sourceName, `${entryName}: ${reason}`);
    });
    const components = entryComponents(header.name, refuse);
    if (components[0]?.startsWith(stagingPrefix))
      refuse(`names starting with ${stagingPrefix} are reserved for the restore itself`);
    const size = header.size ?? 0;

    if (header.type === "directory") {
      if (size !== 0) throw corruptError(sourceName, `${entryName}: a directory with ${size} bytes of data`);
      // `./` (GNU tar's first entry): the target itself keeps its own metadata.
      if (components.length === 0) return;
      const full = attempt(() => directories.directory(components, refuse), header.name);
      directoryMetadata.set(full, metadata);
      result.directories++;
      return;
    }

    if (components.length === 0) refuse("a file needs a name");
    if (size > maxBytes - result.bytes)
      refuse(
        `it declares ${size} bytes, more than the ${maxBytes - result.bytes} bytes left of limits.maxBytes (${maxBytes})`,
      );
    const fd = attempt(() => directories.file(components, refuse), header.name);
    try {
      for await (const chunk of tar.data(entry)) {
        attempt(() => {
          for (let offset = 0; offset < chunk.length;) offset += writeSync(fd, chunk, offset);
        }, header.name);
        result.bytes += chunk.length;
        options.onProgress?.(result.bytes);
      }
      attempt(() => {
        setMetadata(fd, metadata, canChown);
        fsyncSync(fd);
      }, header.name);
    } finally {
      closeSync(fd);
    }
    result.files++;
  };

  try {
    for (let entry = await tar.next(); entry !== null; entry = await tar.next()) await restoreEntry(entry);
    await tar.finish();
  } catch (error) {
    tar.stop();
    throw error;
  }

  // Deepest first, so that setting a directory's mtime is the last change in it.
  const byDepth = [...directoryMetadata].sort(([a], [b]) => b.split("/").length - a.split("/").length);
  for (const [full, metadata] of byDepth) {
    attempt(
      () => withDescriptor(openDirectory(full), (fd) => setMetadata(fd, metadata, canChown)),
      path.relative(root, full),
    );
  }
  log.debug(
    { ...result, gzipBytes: tar.gzipBytes, tarBytes: tar.tarBytes },
    `Extracted ${sourceName} into ${root}.`,
  );
  return result;
}

/** Mode (permission bits only), owner and mtime of a header, checked to be numbers. */
function checkedMetadata(header: Header, corrupt: (reason: string) => never): Metadata {
  const id = (value: number | undefined, field: string): number => {
    if (value === undefined) return 0;
    if (!Number.isSafeInteger(value) || value < 0 || value >= 0xffffffff)
      corrupt(`its ${field} field is not a valid id (${value})`);
    return value;
  };
  const mode = header.mode ?? (header.type === "directory" ? 0o755 : 0o644);
  if (!Number.isSafeInteger(mode) || mode < 0) corrupt(`its mode field is not a number (${mode})`);
  const mtime = header.mtime ?? new Date(0);
  if (!Number.isFinite(mtime.getTime())) corrupt("its mtime field is not a number");
  return { mode: mode & 0o777, uid: id(header.uid, "uid"), gid: id(header.gid, "gid"), mtime };
}

function unsupportedType(header: Header): string {
  const only = "only regular files and directories are restored";
  // tar-stream gives null for type flags it does not know (GNU sparse, ...).
  const type = header.type as Header["type"] | null;
  switch (type) {
    case "symlink":
      return `it is a symlink (to ${JSON.stringify(header.linkname ?? "")}); ${only}`;
    case "link":
      return `it is a hard link (to ${JSON.stringify(header.linkname ?? "")}); ${only}`;
    case "character-device":
    case "block-device":
      return `it is a ${type} (${header.devmajor ?? 0},${header.devminor ?? 0}); ${only}`;
    case "fifo":
      return `it is a FIFO; ${only}`;
    default:
      return `its type is ${type ?? "not one tar-stream knows"}; ${only}`;
  }
}

/** Owner (when root), permission bits and mtime, through the open descriptor. */
function setMetadata(fd: number, metadata: Metadata, canChown: boolean): void {
  if (canChown) fchownSync(fd, metadata.uid, metadata.gid);
  fchmodSync(fd, metadata.mode);
  futimesSync(fd, metadata.mtime, metadata.mtime);
}

/** Runs a file system operation on an entry; its failure is a write error naming the entry. */
function attempt<T>(operation: () => T, name: string): T {
  try {
    return operation();
  } catch (error) {
    if (isRtr7Error(error)) throw error;
    throw writeError(`restoring ${JSON.stringify(name)} failed`, error);
  }
}

function writeError(message: string, cause: unknown): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_BACKUP_WRITE", `${message}: ${describeError(cause)}`, { cause });
}

/** Makes the renames into the target durable. */
function syncDirectory(directory: string): void {
  try {
    withDescriptor(openDirectory(directory), fsyncSync);
  } catch (error) {
    throw writeError(`restore into ${directory}: syncing the directory failed`, error);
  }
}
