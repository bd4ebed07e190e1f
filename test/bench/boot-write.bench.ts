// What a boot upload costs before and after issue 12, in one run: the same
// real boot.img (rtr7 image build) pushed into an update API whose boot
// partition is a loop device (a real block device, so the kernel counts
// every sector that reaches it: /sys/block/loopN/stat), in three ways:
//  - today's: the whole 100 MiB image copied over the partition
//    (/perm/rtr7/update.json {"bootWrite": "image"}), sent plain by curl -T
//    as gokrazy's client sends it;
//  - the slot's files only (the default now), sent plain by curl -T;
//  - the slot's files only, sent by rtr7's client, which gzips a boot image
//    for a unit that lists the gzip feature.
// Twice: a new version with the same kernel and initrd (most updates), and
// one with a new kernel. Prints sectors written, bytes on the wire and the
// wall time of the PUT, with ratios against today's. Needs root (losetup).
// Never asserts on time.
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { silentLogger } from "../../lib/log.js";
import { listenUnitApp } from "../../router/http-guard/serve.js";
import { buildUpdateApi } from "../../router/update-api/server.js";
import { openUnit } from "../../updates/client/index.js";
import { buildUnitImages } from "../../updates/image/build.js";
import { FakeBootControl, makeMbrSector } from "../integration/update-api-fixture.js";
import { fileBackedUnitPaths } from "../helpers/unit-paths.js";
import { curlPushArgs } from "../helpers/curl.js";
import { median, timeCommand } from "./harness.js";

const run = promisify(execFile);
const mtools = { ...process.env, MTOOLS_SKIP_CHECK: "1" };
const password = "bench-boot-write";
const rounds = Number(process.env.RTR7_BENCH_BOOT_ROUNDS ?? 3);

type Way = "image, curl" | "files, curl" | "files, rtr7 gzip";
const ways: Way[] = ["image, curl", "files, curl", "files, rtr7 gzip"];

async function sectorsWritten(loop: string): Promise<number> {
  const fields = (await readFile(`/sys/block/${path.basename(loop)}/stat`, "utf8")).trim().split(/\s+/);
  return Number(fields[6]);
}

async function push(
  work: string,
  bootV1: string,
  upload: string,
  way: Way,
): Promise<{ ms: number; sectors: number; wire: number }> {
  const dir = await mkdtemp(path.join(work, "unit-"));
  const paths = await fileBackedUnitPaths(dir);
  const backing = path.join(dir, "boot-backing.img");
  await copyFile(bootV1, backing);
  const loop = (await run("losetup", ["--find", "--show", backing])).stdout.trim();
  try {
    paths.boot = loop;
    await writeFile(paths.mbr, makeMbrSector());
    if (way === "image, curl") {
      await mkdir(path.join(paths.perm, "rtr7"), { recursive: true });
      await writeFile(path.join(paths.perm, "rtr7", "update.json"), '{"bootWrite": "image"}\n');
    }
    const app = buildUpdateApi({
      paths,
      boot: new FakeBootControl({ running: "a", trial: false, committed: "a" }),
      password,
      log: silentLogger(),
    });
    await listenUnitApp(app, { address: "127.0.0.1" }, 0, "update API", silentLogger());
    const port = (app.server.address() as AddressInfo).port;
    try {
      const before = await sectorsWritten(loop);
      let ms: number;
      let wire = (await stat(upload)).size;
      if (way === "files, rtr7 gzip") {
        const unit = await openUnit(
          { host: "127.0.0.1", port, diagdPort: port, backupdPort: port },
          { password },
        );
        const started = performance.now();
        await unit.streamTo("boot", upload);
        ms = performance.now() - started;
        // What went over the wire: the same gzip the client makes (level 1).
        wire = gzipSync(await readFile(upload), { level: 1 }).length;
      } else {
        ms = await timeCommand(
          "curl",
          curlPushArgs(password, upload, `http://127.0.0.1:${port}/update/boot`),
        );
      }
      return { ms, sectors: (await sectorsWritten(loop)) - before, wire };
    } finally {
      await app.close();
    }
  } finally {
    await run("losetup", ["-d", loop]);
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log("boot-write bench: skipped, needs root (losetup)");
    return;
  }
  const work = await mkdtemp(path.join(tmpdir(), "rtr7-bench-boot-write-"));
  try {
    const v1 = path.join(work, "v1");
    await buildUnitImages({ outDir: v1, hostname: "bench", version: "v1" });
    const bootV1 = path.join(v1, "boot.img");
    // A new kernel: the same one with 1 MiB more, in both slots' directories.
    const newKernel = path.join(work, "vmlinuz-new");
    const kernel = (
      await run("mcopy", ["-n", "-i", bootV1, "::a/vmlinuz", "-"], {
        env: mtools,
        encoding: "buffer",
        maxBuffer: 1 << 28,
      })
    ).stdout;
    await writeFile(newKernel, Buffer.concat([kernel, randomBytes(1024 * 1024)]));
    const bootNewKernel = path.join(work, "boot-new-kernel.img");
    await copyFile(bootV1, bootNewKernel);
    for (const slot of ["a", "b"])
      await run("mcopy", ["-o", "-i", bootNewKernel, newKernel, `::${slot}/vmlinuz`], { env: mtools });

    console.log(`boot-write bench: PUT /update/boot into a loop device, median of ${rounds}`);
    console.log(
      "  case            way                sectors written   MiB written  wire MiB   time ms   vs today",
    );
    for (const [label, upload] of [
      ["same kernel", bootV1],
      ["new kernel", bootNewKernel],
    ] as const) {
      let today: { ms: number; bytes: number } | undefined;
      for (const way of ways) {
        const results = [];
        for (let round = 0; round < rounds; round += 1) results.push(await push(work, bootV1, upload, way));
        const ms = median(results.map((result) => result.ms));
        const sectors = median(results.map((result) => result.sectors));
        const wire = results[0]?.wire ?? 0;
        today ??= { ms, bytes: sectors * 512 };
        const bytes = sectors * 512;
        console.log(
          `  ${label.padEnd(15)} ${way.padEnd(18)} ${String(sectors).padStart(15)} ${(bytes / 2 ** 20).toFixed(2).padStart(12)} ${(wire / 2 ** 20).toFixed(2).padStart(9)} ${ms.toFixed(0).padStart(9)}   ` +
            `bytes ${(bytes / today.bytes).toFixed(3)}x, time ${(ms / today.ms).toFixed(2)}x`,
        );
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
