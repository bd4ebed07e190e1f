// A streaming writer of the "newc" cpio format, the format the Linux kernel
// unpacks an initramfs from. Written by hand because the npm cpio packages
// either buffer whole archives or only read; an initramfs carrying node is
// large, so entries are streamed from disk one by one. Timestamps are fixed
// (0) and inode numbers sequential so the same inputs give the same bytes.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";

export type CpioEntry =
  | { kind: "directory"; path: string; mode?: number }
  | { kind: "file"; path: string; mode?: number; data: Buffer }
  | { kind: "file"; path: string; mode?: number; source: string }
  | { kind: "symlink"; path: string; target: string };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const trailerName = "TRAILER!!!";

function header(fields: {
  inode: number;
  mode: number;
  nlink: number;
  size: number;
  nameSize: number;
}): Buffer {
  const hex = (value: number): string => value.toString(16).padStart(8, "0");
  return Buffer.from(
    "070701" +
      hex(fields.inode) +
      hex(fields.mode) +
      hex(0) + // uid
      hex(0) + // gid
      hex(fields.nlink) +
      hex(0) + // mtime
      hex(fields.size) +
      hex(0) + // devmajor
      hex(0) + // devminor
      hex(0) + // rdevmajor
      hex(0) + // rdevminor
      hex(fields.nameSize) +
      hex(0), // check
    "ascii",
  );
}

function padding(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

function nameBytes(path: string): Buffer {
  const relative = path.replace(/^\/+/, "");
  if (relative === "" || relative.split("/").some((part) => part === ".." || part === "")) {
    throw new Error(`cpio: bad entry path ${JSON.stringify(path)}`);
  }
  return Buffer.from(relative + "\0");
}

/** Yields the archive's bytes entry by entry; pipe it through gzip to a file. */
export async function* cpioArchive(
  entries: Iterable<CpioEntry> | AsyncIterable<CpioEntry>,
): AsyncGenerator<Buffer> {
  let inode = 1;
  for await (const entry of entries) {
    const name = nameBytes(entry.path);
    if (entry.kind === "directory") {
      yield header({
        inode: inode++,
        mode: S_IFDIR | (entry.mode ?? 0o755),
        nlink: 2,
        size: 0,
        nameSize: name.length,
      });
      yield Buffer.concat([name, padding(110 + name.length)]);
    } else if (entry.kind === "symlink") {
      const target = Buffer.from(entry.target);
      yield header({
        inode: inode++,
        mode: S_IFLNK | 0o777,
        nlink: 1,
        size: target.length,
        nameSize: name.length,
      });
      yield Buffer.concat([name, padding(110 + name.length), target, padding(target.length)]);
    } else {
      const size = "data" in entry ? entry.data.length : (await stat(entry.source)).size;
      yield header({
        inode: inode++,
        mode: S_IFREG | (entry.mode ?? 0o644),
        nlink: 1,
        size,
        nameSize: name.length,
      });
      yield Buffer.concat([name, padding(110 + name.length)]);
      if ("data" in entry) {
        yield entry.data;
      } else {
        let copied = 0;
        for await (const chunk of createReadStream(entry.source, { highWaterMark: 1024 * 1024 })) {
          copied += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
        if (copied !== size) throw new Error(`cpio: ${entry.source} changed size while being archived`);
      }
      yield padding(size);
    }
  }
  const trailer = Buffer.from(trailerName + "\0");
  yield header({ inode: 0, mode: 0, nlink: 1, size: 0, nameSize: trailer.length });
  yield Buffer.concat([trailer, padding(110 + trailer.length)]);
}
