// backupd's GET /backup.tar.gz (port 8077): the unit's /perm as a gzip'd
// tar, saved where asked only when whole. backupd needs the update API's
// credentials (it serves the password file among the rest), so they go in
// the Authorization header, as to the update API. The bytes go to a temp
// file beside the destination, which is fsynced, checked to be a complete
// gzip tar (backupd ends a download early when archiving fails), renamed
// into place, and the directory fsynced; on any failure the temp file is
// removed, so nothing is left on disk.
import { createWriteStream } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { syncDirectory } from "../../lib/atomic-file.js";
import { Rtr7Error, describeError, isRtr7Error } from "../../lib/errors.js";
import { formatBytes } from "../../lib/log.js";
import { verifyBackup } from "../backup-check.js";
import { where, type UnitContext } from "./context.js";
import { readText } from "./transport.js";
import { UnitUnreachableError, redact, unitAnswerError } from "./unit-errors.js";

export interface BackupOptions {
  /** Bytes saved so far. */
  onProgress?: (bytes: number) => void;
}

export async function downloadBackup(
  unit: UnitContext,
  destination: string,
  options: BackupOptions = {},
): Promise<{ bytes: number }> {
  const partial = path.join(
    path.dirname(destination),
    `.${path.basename(destination)}.partial-${randomBytes(4).toString("hex")}`,
  );
  try {
    const bytes = await download(unit, partial, options);
    await verifyBackup(partial);
    await rename(partial, destination);
    await syncDirectory(path.dirname(destination));
    unit.log.debug({ event: "backup", bytes }, `Saved the backup (${formatBytes(bytes)}) as ${destination}.`);
    return { bytes };
  } finally {
    await rm(partial, { force: true });
  }
}

async function download(unit: UnitContext, file: string, options: BackupOptions): Promise<number> {
  const step = "GET /backup.tar.gz";
  const at = where(unit, unit.ports.backupd);
  const response = await unit.transport({
    host: unit.host,
    port: unit.ports.backupd,
    tls: unit.tls,
    method: "GET",
    path: "/backup.tar.gz",
    step,
    headers: { authorization: unit.authorization },
    idleTimeoutMs: unit.idleTimeoutMs,
  });
  if (response.status !== 200) {
    const contentType = response.headers["content-type"];
    const text = await readText(response, 64 * 1024);
    if (response.status === 401)
      throw unitAnswerError(at, step, response.status, contentType, text, unit.secrets);
    throw new Rtr7Error(
      "RTR7_ERR_BACKUP_DOWNLOAD",
      `${step} from ${at}: the unit answered HTTP ${response.status}: ${redact(text, unit.secrets).trim().slice(0, 2000)}`,
    );
  }
  let bytes = 0;
  const count = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      options.onProgress?.(bytes);
      callback(null, chunk);
    },
  });
  try {
    await pipeline(
      response.body,
      count,
      createWriteStream(file, { highWaterMark: 1024 * 1024, mode: 0o600 }),
    );
    await syncFile(file);
  } catch (error) {
    if (error instanceof UnitUnreachableError && error.reason !== "stalled")
      throw new Rtr7Error(
        "RTR7_ERR_BACKUP_DOWNLOAD",
        `${step} from ${at}: the download was cut after ${formatBytes(bytes)} (backupd ends it so when archiving fails)`,
        { cause: error },
      );
    if (isRtr7Error(error)) throw error;
    throw new Rtr7Error("RTR7_ERR_FILE_MISSING", `${step}: writing ${file} failed: ${describeError(error)}`, {
      cause: error,
      hint: "Check that the run directory is writable and has room.",
    });
  } finally {
    response.close();
  }
  return bytes;
}

/** fsync of a file just written, before it is renamed into place. */
async function syncFile(file: string): Promise<void> {
  const handle = await open(file, "r+");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
