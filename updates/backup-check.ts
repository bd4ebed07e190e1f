// Checks that a downloaded backup (backupd's /backup.tar.gz) is whole before
// safe-update trusts it: the file is read to its end through gunzip and
// tar-stream's parser, every entry consumed. gunzip must end cleanly (a cut
// download fails there), and the tar must reach its end-of-archive marker:
// tar-stream accepts a tar that stops right after an entry's data without
// complaint, so this module tracks where the last entry's data ends and
// requires the two zero blocks that close a tar to follow it, with nothing
// but zeros after them.
import { createReadStream } from "node:fs";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { extract as tarExtract } from "tar-stream";
import { Rtr7Error, describeError, isRtr7Error } from "../lib/errors.js";

export interface BackupSummary {
  /** Tar entries (files, directories, ...). */
  entries: number;
  /** Bytes of the gzip file. */
  bytes: number;
}

const block = 512;

export async function verifyBackup(file: string): Promise<BackupSummary> {
  const corrupt = (message: string, cause?: unknown): Rtr7Error =>
    new Rtr7Error("RTR7_ERR_BACKUP_CORRUPT", `backup ${file}: ${message}`, { cause });

  let gzipBytes = 0;
  let tarBytes = 0;
  /** Offset just past the last non-zero byte of the tar. */
  let lastNonZeroEnd = 0;
  /** Offset just past the last entry's data, rounded up to a block. */
  let entriesEnd = 0;
  let entries = 0;
  let failedStage: string | undefined;

  const countGzip = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      gzipBytes += chunk.length;
      callback(null, chunk);
    },
  });
  const countTar = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      const last = lastNonZeroIndex(chunk);
      if (last >= 0) lastNonZeroEnd = tarBytes + last + 1;
      tarBytes += chunk.length;
      callback(null, chunk);
    },
  });
  const source = createReadStream(file, { highWaterMark: 1024 * 1024 });
  const gunzip = createGunzip();
  const extract = tarExtract();
  source.once("error", () => (failedStage ??= "reading"));
  gunzip.once("error", () => (failedStage ??= "gzip"));
  extract.once("error", () => (failedStage ??= "tar"));

  const consume = (async () => {
    for await (const entry of extract) {
      entries += 1;
      entriesEnd = entry.offset + block + Math.ceil(entry.header.size / block) * block;
      entry.resume();
    }
  })();
  try {
    await Promise.all([pipeline(source, countGzip, gunzip, countTar, extract), consume]);
  } catch (error) {
    if (isRtr7Error(error)) throw error;
    if (failedStage === "reading")
      throw new Rtr7Error(
        "RTR7_ERR_FILE_MISSING",
        `backup ${file}: cannot be read (${describeError(error)})`,
        {
          cause: error,
        },
      );
    const where =
      failedStage === "gzip"
        ? `gzip data ends early or is corrupt after ${gzipBytes} bytes`
        : failedStage === "tar"
          ? `corrupt tar after ${tarBytes} bytes of tar`
          : `unreadable after ${gzipBytes} bytes`;
    throw corrupt(`${where} (${describeError(error)})`, error);
  }

  // A tar ends with two zero blocks after the last entry's data.
  if (tarBytes < entriesEnd + 2 * block || lastNonZeroEnd > entriesEnd)
    throw corrupt(
      `the tar has no end-of-archive marker after its ${entries} entries (${tarBytes} bytes of tar; want two zero blocks at ${entriesEnd}): the archive was cut short`,
    );
  return { entries, bytes: gzipBytes };
}

const zeros = Buffer.alloc(64 * 1024);

/** Index of the last non-zero byte, or -1 when the chunk is all zeros. */
function lastNonZeroIndex(chunk: Buffer): number {
  // Compare windows from the end against zeros (memcmp), then find the byte.
  let end = chunk.length;
  while (end > 0) {
    const start = Math.max(0, end - zeros.length);
    if (chunk.compare(zeros, 0, end - start, start, end) !== 0) {
      for (let index = end - 1; index >= start; index -= 1) if (chunk[index] !== 0) return index;
    }
    end = start;
  }
  return -1;
}
