// Files the recovery server hands out (over TFTP and HTTP), by name. Served
// files come from disk (images, pxelinux) or memory (generated configs); the
// servers only ever see this map, never a directory, so no request path can
// reach a file that was not put in it.
import { createReadStream, promises as fs } from "node:fs";
import { Readable } from "node:stream";
import { Rtr7Error } from "./errors.js";

export interface ServedFile {
  readonly name: string;
  readonly size: number;
  /** Set for files on disk, so servers can send them without a stream. */
  readonly diskPath?: string;
  /** A stream of bytes start..end inclusive (the whole file by default). */
  open(range?: { start: number; end: number }): Readable;
}

export async function fileFromDisk(name: string, path: string): Promise<ServedFile> {
  let size: number;
  try {
    const stat = await fs.stat(path);
    if (!stat.isFile()) throw new Error("not a regular file");
    await fs.access(path, fs.constants.R_OK);
    size = stat.size;
  } catch (error) {
    throw new Rtr7Error("RTR7_ERR_FILE_MISSING", `open ${name} at ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return {
    name,
    size,
    diskPath: path,
    open: (range) =>
      createReadStream(path, {
        highWaterMark: 1024 * 1024,
        ...(range ? { start: range.start, end: range.end } : {}),
      }),
  };
}

export function fileFromBuffer(name: string, content: Buffer | string): ServedFile {
  const bytes = typeof content === "string" ? Buffer.from(content) : content;
  return {
    name,
    size: bytes.length,
    open: (range) => Readable.from([range ? bytes.subarray(range.start, range.end + 1) : bytes]),
  };
}

/** Name → file; lookups are exact (no normalisation, no directories). */
export class FileMap {
  private readonly files = new Map<string, ServedFile>();

  constructor(files: Iterable<ServedFile> = []) {
    for (const file of files) this.add(file);
  }

  add(file: ServedFile): void {
    this.files.set(file.name, file);
  }

  get(name: string): ServedFile | undefined {
    return this.files.get(name);
  }

  names(): string[] {
    return [...this.files.keys()];
  }
}
