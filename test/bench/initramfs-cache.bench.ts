// The recovery initramfs cache: `rtr7 recover` builds the initramfs once per
// set of inputs and then serves it from the cache. This times a cold build
// (an empty cache) against a cached one, and both against the ideal of
// reading the finished archive once (what any cache costs at least), in the
// same run. Moved here from the unit test, which now checks only that the
// cached archive is not written again.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { buildRecoveryInitramfs } from "../../updates/image/initramfs/builder.js";
import { hostKernel } from "../helpers/host-kernel.js";
import { median } from "./harness.js";

const rounds = 3;

async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = process.hrtime.bigint();
  const value = await work();
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, value };
}

async function main(): Promise<void> {
  const host = hostKernel();
  if (host.missing !== undefined) {
    console.log(`initramfs cache: skipped (${host.missing})`);
    return;
  }
  const work = await mkdtemp(path.join(tmpdir(), "rtr7-bench-initramfs-"));
  try {
    const entryDir = path.join(work, "entry");
    await mkdir(entryDir);
    const entry = path.join(entryDir, "main.mjs");
    await writeFile(entry, "#!/usr/bin/env node\nconsole.log('bench');\n");
    const cold: number[] = [];
    const cached: number[] = [];
    const readOnce: number[] = [];
    let bytes = 0;
    for (let round = 0; round < rounds; round += 1) {
      const cacheDir = path.join(work, `cache-${round}`);
      const first = await timed(() => buildRecoveryInitramfs({ kernel: host.kernel, entry, cacheDir }));
      const again = await timed(() => buildRecoveryInitramfs({ kernel: host.kernel, entry, cacheDir }));
      if (first.value.cached || !again.value.cached) throw new Error("the cache did not behave");
      const read = await timed(() => readFile(first.value.path));
      bytes = first.value.bytes;
      cold.push(first.ms);
      cached.push(again.ms);
      readOnce.push(read.ms);
    }
    const [coldMs, cachedMs, readMs] = [median(cold), median(cached), median(readOnce)];
    console.log(`\nRecovery initramfs (${(bytes / 1024 / 1024).toFixed(1)} MiB), medians of ${rounds}`);
    console.log(`  cold build:            ${coldMs.toFixed(0).padStart(7)} ms`);
    console.log(
      `  from the cache:        ${cachedMs.toFixed(0).padStart(7)} ms  (${(coldMs / cachedMs).toFixed(1)}x faster than cold)`,
    );
    console.log(
      `  reading the archive:   ${readMs.toFixed(0).padStart(7)} ms  (the ideal; the cache costs ${(cachedMs / readMs).toFixed(2)}x of it)`,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
