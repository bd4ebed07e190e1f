// The backup of /perm as a stream: a tar (tar-stream's pack) of the regular
// files and directories under the root, in sorted order, gzip'd. Like
// router7's backupd it skips directories named `nobackup` or `srv` at any
// depth (srv holds served data that is not the unit's state) and leaves out
// symlinks, sockets, FIFOs and devices (logged, since the restore refuses
// them anyway). Names are relative to the root; mode, owner, group and mtime
// are kept.
//
// Nothing is held whole in memory: files are read chunk by chunk and a chunk
// is read only once the previous one was taken (the tar's and gzip's buffers
// fill up when the client reads slowly, and the reading waits). A file that
// cannot be read or changes size while it is read fails the archive: the
// stream is destroyed with the error, so the HTTP side can cut the
// connection. A tar that simply stopped would look complete to tar-stream
// and to GNU tar, and a restore from it would lose files without a word.
//
// Two things keep many small files fast (2000 files of 4 KiB took 0.4 s
// before, about as long as 64 MiB of data): the file system calls are
// synchronous, as in the restore (each is one cheap syscall, and a round
// trip through libuv's thread pool costs several times that; this process
// serves nothing else that would wait), and the tar's small pieces (512-byte
// headers, padding) are gathered into 64 KiB batches before gzip, since zlib
// costs a thread-pool round trip per write.
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readSync,
  readdirSync,
  type Stats,
} from "node:fs";
import path from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream";
import { createGzip } from "node:zlib";
import { pack as tarPack, type Pack } from "tar-stream";
import type { Logger } from "../../lib/log.js";

export interface ArchiveOptions {
  /** The directory to archive (/perm). */
  root: string;
  log: Logger;
  /** Directory names skipped at any depth; default nobackup and srv (router7's). */
  skipDirectoryNames?: readonly string[];
  /** zlib level; default 1, as router7 (the unit's CPU is the bottleneck, not the LAN). */
  gzipLevel?: number;
  /** Bytes read from a file at a time; default 128 KiB. */
  chunkBytes?: number;
}

export interface ArchiveStats {
  files: number;
  directories: number;
  /** Entries left out: other file types, and files that vanished before they were read. */
  skipped: number;
  /** Bytes of file data. */
  bytes: number;
}

export interface Archive {
  /** The .tar.gz bytes; destroyed with the error when the archive cannot be completed. */
  stream: Readable;
  /** Settles when the tar is complete (or failed, or the reader went away). */
  done: Promise<ArchiveStats>;
}

export const defaultSkippedDirectories = ["nobackup", "srv"] as const;

const batchBytes = 64 * 1024;

export class ArchiveAbortedError extends Error {
  constructor() {
    super("the archive's reader went away");
    this.name = "ArchiveAbortedError";
  }
}

export function createArchive(options: ArchiveOptions): Archive {
  const tar = tarPack();
  const gzip = createGzip({ level: options.gzipLevel ?? 1 });
  pipeline(tar, batches, gzip, (error) => {
    // A failed archive reaches the HTTP side through `gzip`; a reader that
    // went away (gzip destroyed) must stop the writer waiting on the tar.
    if (error && !tar.destroying) tar.destroy(new ArchiveAbortedError());
  });
  const writer = new TarWriter(tar, options);
  const done = writer.run().then(
    (stats) => {
      tar.finalize();
      return stats;
    },
    (error: unknown) => {
      if (!tar.destroying) tar.destroy(error as Error);
      throw error;
    },
  );
  return { stream: gzip, done };
}

/** Gathers small chunks into batches of at least batchBytes; large chunks pass as they are. */
async function* batches(source: AsyncIterable<unknown>): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const piece of source) {
    const chunk = piece as Buffer;
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes >= batchBytes) {
      yield pending.length === 1 ? chunk : Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
}

class TarWriter {
  private readonly stats: ArchiveStats = { files: 0, directories: 0, skipped: 0, bytes: 0 };
  private readonly skipNames: ReadonlySet<string>;
  private readonly chunkBytes: number;

  constructor(
    private readonly tar: Pack,
    private readonly options: ArchiveOptions,
  ) {
    this.skipNames = new Set(options.skipDirectoryNames ?? defaultSkippedDirectories);
    this.chunkBytes = options.chunkBytes ?? 128 * 1024;
  }

  async run(): Promise<ArchiveStats> {
    await this.directory(this.options.root, "");
    return this.stats;
  }

  private async directory(full: string, relative: string): Promise<void> {
    for (const name of readdirSync(full).sort()) {
      this.checkReader();
      const childFull = path.join(full, name);
      const childRelative = relative === "" ? name : `${relative}/${name}`;
      const stat = vanishedAsNull(() => lstatSync(childFull));
      if (stat === null) {
        this.skip(childRelative, "it vanished before it was read");
      } else if (stat.isDirectory()) {
        if (this.skipNames.has(name)) {
          this.options.log.debug({ path: childRelative }, `skipping ${childRelative}/ (not backed up)`);
          continue;
        }
        await this.addEntry({ ...metadata(stat), name: `${childRelative}/`, type: "directory" });
        this.stats.directories += 1;
        await this.directory(childFull, childRelative);
      } else if (stat.isFile()) {
        await this.file(childFull, childRelative);
      } else {
        this.skip(childRelative, `it is a ${fileType(stat)}, not a regular file or directory`);
      }
    }
  }

  private async file(full: string, relative: string): Promise<void> {
    // O_NONBLOCK: should the file have been replaced by a FIFO since lstat, opening it must not hang.
    const fd = vanishedAsNull(() =>
      openSync(full, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK),
    );
    if (fd === null) {
      this.skip(relative, "it vanished before it was read");
      return;
    }
    try {
      const stat = fstatSync(fd);
      if (!stat.isFile())
        throw new Error(`${relative}: it was replaced by a ${fileType(stat)} while being archived`);
      const size = stat.size;
      let sink: ReturnType<Pack["entry"]> | undefined;
      const entryDone = new Promise<void>((resolve, reject) => {
        sink = this.tar.entry({ ...metadata(stat), name: relative, type: "file", size }, (error) =>
          error ? reject(error) : resolve(),
        );
      });
      entryDone.catch(() => undefined);
      if (!sink) throw new Error("tar-stream did not return the entry's stream");
      // Its errors arrive through the entry's callback (and the tar's destroy).
      sink.on("error", () => undefined);
      let position = 0;
      while (position < size) {
        const want = Math.min(this.chunkBytes, size - position);
        const chunk = Buffer.allocUnsafe(want);
        const bytesRead = readSync(fd, chunk, 0, want, position);
        if (bytesRead === 0)
          throw new Error(`${relative}: it shrank from ${size} to ${position} bytes while being read`);
        position += bytesRead;
        this.stats.bytes += bytesRead;
        if (!sink.write(bytesRead === want ? chunk : chunk.subarray(0, bytesRead))) await this.drained(sink);
      }
      const sizeAfter = fstatSync(fd).size;
      if (sizeAfter !== size)
        throw new Error(`${relative}: its size changed from ${size} to ${sizeAfter} bytes while being read`);
      sink.end(undefined);
      await entryDone;
      this.stats.files += 1;
    } finally {
      closeSync(fd);
    }
  }

  private addEntry(header: Parameters<Pack["entry"]>[0]): Promise<void> {
    return new Promise((resolve, reject) => {
      const sink = this.tar.entry(header, (error) => (error ? reject(error) : resolve()));
      sink.on("error", () => undefined);
    });
  }

  /** Waits until the tar takes more data, or the reader went away. */
  private async drained(sink: NodeJS.EventEmitter): Promise<void> {
    this.checkReader();
    await new Promise<void>((resolve) => {
      const settle = (): void => {
        sink.off("drain", settle);
        sink.off("close", settle);
        resolve();
      };
      sink.on("drain", settle);
      sink.on("close", settle);
    });
    this.checkReader();
  }

  private checkReader(): void {
    if (this.tar.destroying) throw new ArchiveAbortedError();
  }

  private skip(relative: string, why: string): void {
    this.stats.skipped += 1;
    this.options.log.info({ path: relative }, `skipping ${relative}: ${why}`);
  }
}

/** The call's result, or null when the entry no longer exists (removed since its directory was read). */
function vanishedAsNull<T>(call: () => T): T | null {
  try {
    return call();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

function metadata(stat: Stats): { mode: number; uid: number; gid: number; mtime: Date } {
  // The whole st_mode, type bits included: tar-stream replaces a mode of 0
  // (chmod 000) with its default, and masks the type bits off itself.
  return { mode: stat.mode, uid: stat.uid, gid: stat.gid, mtime: stat.mtime };
}

function fileType(stat: Stats): string {
  if (stat.isSymbolicLink()) return "symlink";
  if (stat.isSocket()) return "socket";
  if (stat.isFIFO()) return "FIFO";
  if (stat.isBlockDevice()) return "block device";
  if (stat.isCharacterDevice()) return "character device";
  return "file of another kind";
}
