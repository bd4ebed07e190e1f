// The disk under the verified writer, behind one small interface so a test
// can swap in a disk that loses or flips bytes: how big a target is, writing
// it in place, and reading it back past the page cache. The real one,
// fsDisk(), works on block devices (a unit's /dev/vda2, recovery-init's whole
// disk) and on regular files standing in for them (process-mode slots, test
// disks).
//
// "Past the page cache" means, for each kind of target:
//  - a block device, or a file on a file system that takes O_DIRECT (ext4,
//    xfs, btrfs; tmpfs only on recent kernels): reads are O_DIRECT, so they
//    come from the device, never from the page cache (a disk's own volatile
//    cache may still answer them; the writer's fsync flushes that). The
//    kernel writes a dirty range back before it reads that range directly,
//    so a range can be read back while later bytes are still being written.
//  - anything else (O_DIRECT refused at open): reads go through the page
//    cache. The caller's dropCaches (recovery-init: `echo 3 >
//    /proc/sys/vm/drop_caches`) is run once after the fsync so they come
//    from the medium; without one, the read-back only proves the cache
//    holds what was written, and the reader says so (direct: false).
// Node has neither posix_fadvise nor aligned allocation: an O_DIRECT read
// needs its buffer's address aligned to the device's logical block size,
// which JavaScript cannot see, so each read buffer is over-allocated and the
// aligned view is found by stepping its start in 16-byte steps (malloc's
// alignment) until the kernel stops answering EINVAL; positions and lengths
// are always multiples of 4096, so EINVAL can only mean the address.
import { constants } from "node:fs";
import { open, readFile, stat, type FileHandle } from "node:fs/promises";

export interface TargetInfo {
  bytes: number;
  /** A block device never grows; a regular file grows when written past its end. */
  blockDevice: boolean;
}

export interface DiskWriter {
  /** Writes all of `data` at `position`. */
  write(data: Uint8Array, position: number): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export interface DiskReader {
  /** True when reads come from the device, not the page cache (O_DIRECT). */
  readonly direct: boolean;
  /** Run once after the fsync, before the last read-back: where reads are not direct, the only way past the cache. */
  dropCache(): Promise<void>;
  /**
   * Streams bytes [start, end) of the target to `onBytes`, in order (a view
   * is valid only during its call); returns how many there were, fewer when
   * the target ends first.
   */
  readRange(start: number, end: number, onBytes: (bytes: Uint8Array) => void): Promise<number>;
  close(): Promise<void>;
}

export interface DiskDevice {
  stat(path: string): Promise<TargetInfo>;
  /** Opens an existing target for writing in place: never created, never truncated. */
  openWriter(path: string): Promise<DiskWriter>;
  openReader(path: string): Promise<DiskReader>;
}

export interface FsDiskOptions {
  /** Empties the page cache where O_DIRECT is refused (recovery-init: echo 3 > /proc/sys/vm/drop_caches). */
  dropCaches?: () => Promise<void>;
}

const directAlignment = 4096;
const mallocStep = 16;
const readChunkBytes = 4 * 1024 * 1024;

/** The real disk: node:fs, O_DIRECT read-back where the target takes it. */
export function fsDisk(options: FsDiskOptions = {}): DiskDevice {
  return {
    stat: statTarget,
    async openWriter(path) {
      const handle = await open(path, "r+");
      return {
        async write(data, position) {
          for (let done = 0; done < data.length;) {
            const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
            if (bytesWritten === 0)
              throw new Error(`write ${path} at byte ${position + done}: nothing written`);
            done += bytesWritten;
          }
        },
        sync: () => handle.sync(),
        close: () => handle.close(),
      };
    },
    async openReader(path) {
      let handle: FileHandle;
      try {
        handle = await open(path, constants.O_RDONLY | constants.O_DIRECT);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EINVAL") throw error;
        return new RangeReader(await open(path, "r"), false, options.dropCaches);
      }
      return new RangeReader(handle, true, undefined);
    },
  };
}

/** A read buffer; for O_DIRECT, over-allocated, with the aligned start found by the first reads. */
class ReadBuffer {
  private readonly raw: Buffer;
  private shift = 0;

  constructor(private readonly direct: boolean) {
    this.raw = Buffer.allocUnsafeSlow(readChunkBytes + (direct ? directAlignment : 0));
  }

  async read(handle: FileHandle, position: number, length: number): Promise<Uint8Array> {
    for (;;) {
      try {
        const { bytesRead } = await handle.read(this.raw, this.shift, length, position);
        return this.raw.subarray(this.shift, this.shift + bytesRead);
      } catch (error) {
        const misaligned = this.direct && (error as NodeJS.ErrnoException).code === "EINVAL";
        if (!misaligned || this.shift + mallocStep >= directAlignment) throw error;
        this.shift += mallocStep;
      }
    }
  }
}

class RangeReader implements DiskReader {
  private readonly buffers: [ReadBuffer, ReadBuffer];

  constructor(
    private readonly handle: FileHandle,
    readonly direct: boolean,
    private readonly dropCaches: (() => Promise<void>) | undefined,
  ) {
    this.buffers = [new ReadBuffer(direct), new ReadBuffer(direct)];
  }

  async dropCache(): Promise<void> {
    if (!this.direct) await this.dropCaches?.();
  }

  async readRange(start: number, end: number, onBytes: (bytes: Uint8Array) => void): Promise<number> {
    const align = this.direct ? directAlignment : 1;
    const until = Math.ceil(end / align) * align;
    const lengthAt = (position: number): number => Math.min(readChunkBytes, until - position);
    let position = Math.floor(start / align) * align;
    let index = 0;
    let total = 0;
    // Two buffers: the next read runs while the caller hashes this one.
    let pending: Promise<Uint8Array> | undefined =
      position < until ? this.buffers[0].read(this.handle, position, lengthAt(position)) : undefined;
    while (pending) {
      const bytes = await pending;
      const at = position;
      const full = bytes.length === lengthAt(at);
      position += bytes.length;
      index = 1 - index;
      pending =
        full && position < until
          ? this.buffers[index as 0 | 1].read(this.handle, position, lengthAt(position))
          : undefined;
      const from = Math.max(start, at) - at;
      const to = Math.min(end, at + bytes.length) - at;
      if (to > from) {
        onBytes(bytes.subarray(from, to));
        total += to - from;
      }
    }
    return total;
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/**
 * A regular file's size, or a block device's from sysfs
 * (/sys/dev/block/MAJOR:MINOR/size, always in 512-byte sectors): Node has
 * no lseek to the end of a device, and sysfs needs neither an ioctl binding
 * nor util-linux's blockdev on the unit.
 */
async function statTarget(path: string): Promise<TargetInfo> {
  const info = await stat(path, { bigint: true });
  if (info.isFile()) return { bytes: Number(info.size), blockDevice: false };
  if (!info.isBlockDevice()) throw new Error(`${path} is neither a block device nor a regular file`);
  // glibc's makedev encoding, as libuv fills st_rdev from statx.
  const rdev = info.rdev;
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  const sysfs = `/sys/dev/block/${major}:${minor}/size`;
  const sectors = Number((await readFile(sysfs, "utf8")).trim());
  if (!Number.isSafeInteger(sectors)) throw new Error(`${sysfs} holds no number of sectors`);
  return { bytes: sectors * 512, blockDevice: true };
}

/** Reads `length` bytes at `offset` of a file or device, through the page cache (fewer at its end). */
export async function readAt(path: string, offset: number, length: number): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, offset);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
