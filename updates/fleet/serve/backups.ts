// The units' backups on `rtr7 fleet serve`: before a job's update, a unit
// uploads its /perm backup (`PUT /units/HOST/backups`, the gzip'd tar
// backupd makes) with its own credential (the one its uplink logs in to
// the broker with), and the server keeps the last N per unit under
// DATA/backups/HOST/, each written to a temporary file and renamed, so a
// cut upload never replaces a whole one. The body must start as gzip does;
// anything else is refused before it is kept. A backup holds the unit's
// password: files are 0600, directories 0700.
import { createWriteStream } from "node:fs";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Rtr7Error } from "../../../lib/errors.js";
import { checkedHostname } from "../../../lib/wire/names.js";

export interface StoredBackup {
  hostname: string;
  file: string;
  bytes: number;
}

export class BackupStore {
  constructor(
    private readonly dataDir: string,
    private readonly keep: number,
  ) {}

  dir(hostname: string): string {
    return path.join(this.dataDir, "backups", checkedHostname(hostname));
  }

  /** Stores the upload as HOST/<UTC time>.tar.gz and removes all but the newest `keep`. */
  async store(hostname: string, body: Readable, now = new Date()): Promise<StoredBackup> {
    const dir = this.dir(hostname);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const name = `${now.toISOString().replace(/[:.]/g, "-")}.tar.gz`;
    const file = path.join(dir, name);
    const partial = path.join(dir, `.${name}.partial`);
    let first = true;
    const gzipOnly = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        if (first && chunk.length > 0) {
          first = false;
          if (chunk[0] !== 0x1f || (chunk.length > 1 && chunk[1] !== 0x8b))
            return done(
              new Rtr7Error("RTR7_ERR_HTTP_REQUEST", `${hostname}'s backup is not gzip'd (backupd's tar.gz)`),
            );
        }
        done(null, chunk);
      },
    });
    try {
      await pipeline(body, gzipOnly, createWriteStream(partial, { mode: 0o600 }));
      await rename(partial, file);
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
    const bytes = (await stat(file)).size;
    const kept = (await this.list(hostname)).reverse();
    for (const old of kept.slice(this.keep)) await rm(path.join(dir, old), { force: true });
    return { hostname, file, bytes };
  }

  /** The unit's backups, oldest first. */
  async list(hostname: string): Promise<string[]> {
    const names = await readdir(this.dir(hostname)).catch(() => [] as string[]);
    return names.filter((name) => name.endsWith(".tar.gz") && !name.startsWith(".")).sort();
  }
}
