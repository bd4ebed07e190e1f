// Disks that fail the way real ones do, for the verified writer's callers:
// the real node:fs disk underneath, with one byte flipped on its way back
// from the medium (what a failing disk or a bad cable does), and a record of
// every fsync. The file itself keeps what was written, so a test can also
// show that the write happened and only the read-back caught the fault.
import { fsDisk, type DiskDevice } from "../../lib/disk/device.js";

export interface FaultyDisk extends DiskDevice {
  /** Paths fsynced, in order. */
  readonly synced: string[];
  /** Paths whose read-back was direct (O_DIRECT), in the order they were opened. */
  readonly readers: { path: string; direct: boolean }[];
}

/** node:fs, except that the byte at absolute position `flipAt` of `path` reads back inverted. */
export function faultyDisk(options: { path?: string; flipAt?: number } = {}): FaultyDisk {
  const real = fsDisk();
  const synced: string[] = [];
  const readers: { path: string; direct: boolean }[] = [];
  return {
    synced,
    readers,
    stat: (path) => real.stat(path),
    async openWriter(path) {
      const writer = await real.openWriter(path);
      return {
        write: (data, position) => writer.write(data, position),
        sync: async () => {
          await writer.sync();
          synced.push(path);
        },
        close: () => writer.close(),
      };
    },
    async openReader(path) {
      const reader = await real.openReader(path);
      readers.push({ path, direct: reader.direct });
      const { flipAt } = options;
      const flips = flipAt !== undefined && (options.path === undefined || options.path === path);
      return {
        direct: reader.direct,
        dropCache: () => reader.dropCache(),
        close: () => reader.close(),
        readRange: (start, end, onBytes) => {
          let position = start;
          return reader.readRange(start, end, (bytes) => {
            if (flips && flipAt >= position && flipAt < position + bytes.length) {
              const copy = Buffer.from(bytes);
              copy[flipAt - position] = (copy[flipAt - position] ?? 0) ^ 0xff;
              onBytes(copy);
            } else onBytes(bytes);
            position += bytes.length;
          });
        },
      };
    },
  };
}
