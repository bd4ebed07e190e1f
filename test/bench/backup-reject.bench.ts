// How fast a restore refuses a hostile backup: a gzip tar whose first
// header declares 10 GiB, followed by a stream that never ends (the test in
// test/unit/backup-restore.test.ts proves the refusal; this measures it).
// The ideal is refusing on the header alone, so the time is compared with
// gunzipping and parsing that one 512-byte header, in the same run.
import { PassThrough } from "node:stream";
import { constants as zlibConstants, gunzipSync, gzipSync } from "node:zlib";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pack as tarPack } from "tar-stream";
import { isRtr7Error } from "../../lib/errors.js";
import { restoreBackup } from "../../recovery-init/backup/restore.js";
import { median } from "./harness.js";

const rounds = 20;

async function hugeHeader(): Promise<Buffer> {
  const pack = tarPack();
  pack.entry({ name: "huge", type: "file", size: 10 * 1024 ** 3 });
  const header = await new Promise<Buffer>((resolve) => pack.once("data", (data) => resolve(data as Buffer)));
  pack.destroy();
  return gzipSync(header, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
}

async function main(): Promise<void> {
  const compressed = await hugeHeader();
  const work = await mkdtemp(path.join(tmpdir(), "rtr7-bench-reject-"));
  try {
    const refuse: number[] = [];
    const ideal: number[] = [];
    for (let round = 0; round < rounds; round += 1) {
      const target = path.join(work, `target-${round}`);
      await mkdir(target);
      const source = new PassThrough();
      const started = process.hrtime.bigint();
      source.write(compressed);
      const outcome = await restoreBackup({ source, target }).then(
        () => "accepted",
        (error: unknown) => (isRtr7Error(error, "RTR7_ERR_BACKUP_REJECTED") ? "rejected" : String(error)),
      );
      refuse.push(Number(process.hrtime.bigint() - started) / 1e6);
      if (outcome !== "rejected") throw new Error(`the hostile backup was ${outcome}`);
      const idealStarted = process.hrtime.bigint();
      const header = gunzipSync(compressed, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
      if (Number.parseInt(header.subarray(124, 136).toString("latin1").trim(), 8) <= 0)
        throw new Error("no size");
      ideal.push(Number(process.hrtime.bigint() - idealStarted) / 1e6);
    }
    const [ours, best] = [median(refuse), median(ideal)];
    console.log(
      `\nRefusing a backup whose first entry declares 10 GiB (stream never ends), medians of ${rounds}`,
    );
    console.log(`  restoreBackup refuses in:        ${ours.toFixed(2).padStart(8)} ms`);
    console.log(
      `  ideal (gunzip + read one header): ${best.toFixed(2).padStart(8)} ms  (ratio ${(ours / best).toFixed(1)}x)`,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
