// Pushing a 256 MiB image into a process-mode unit's inactive slot
// (the unit target's streamTo over a veth pair, the unit hashing and fsyncing what it
// writes) against `dd bs=1M conv=fsync` copying the same file on the same
// file system, alternated in one run, once with SHA-256 and once with
// CRC-32. The client runs inside the workstation namespace through the
// test driver; its time is the push's own (connect to confirmed hash).
// The same pushes are also compared with curl -T as the client (the wall
// time of `ip netns exec curl`), which shows the client's own share. The
// unit reads every upload back past the page cache before it replies
// (lib/disk/verified-writer.ts); what that costs is shown by the writer on
// its own, the same image from a file onto a slot-sized file, with and
// without the read-back, against the same dd. Never asserts on time. Needs
// root, curl and the image tools.
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { writeVerified } from "../../lib/disk/verified-writer.js";
import { missingPrerequisite } from "../../lab/processes.js";
import { startLabUnitPair } from "../helpers/lab-unit-pair.js";
import { repoPath } from "../helpers/paths.js";
import { removeUnitImages, unitImages } from "../helpers/unit-images.js";
import { compare, printComparisons, timeCommand } from "./harness.js";
import { curlPushArgs } from "../helpers/curl.js";

const sizeMiB = 256;
const unitAddress = "10.94.0.2";
const hostname = "bench1";
const rounds = Number(process.env.RTR7_BENCH_PUSH_ROUNDS ?? 5);

async function writeRandomFile(file: string, bytes: number): Promise<void> {
  const handle = await open(file, "w");
  try {
    const chunk = 16 * 1024 * 1024;
    for (let done = 0; done < bytes; done += chunk)
      await handle.write(randomBytes(Math.min(chunk, bytes - done)));
  } finally {
    await handle.close();
  }
}

/** The unit's writer alone: `image` onto `slot` (SHA-256), with or without the read-back. */
function verifiedWrite(image: string, slot: string, readBack: boolean) {
  return async (): Promise<number> => {
    const started = performance.now();
    await writeVerified({
      path: slot,
      name: "bench slot",
      source: createReadStream(image, { highWaterMark: 1024 * 1024 }),
      algorithm: "sha256",
      readBack,
      errors: {
        tooLarge: "RTR7_ERR_IMAGE_TOO_LARGE",
        io: "RTR7_ERR_UPDATE_WRITE",
        verify: "RTR7_ERR_UPDATE_VERIFY",
      },
    });
    return performance.now() - started;
  };
}

async function main(): Promise<void> {
  const missing = await missingPrerequisite(
    ["curl", "mksquashfs", "unsquashfs", "mkfs.fat", "mcopy", "syslinux", "dd"],
    "network namespaces and port 80",
  );
  if (missing) {
    console.log(`push bench skipped: ${missing}`);
    return;
  }
  const images = await unitImages({ hostname, version: "v1" });
  const pair = await startLabUnitPair({
    label: "push",
    hostname,
    imagesDir: images,
    unitAddress,
    workstationAddress: "10.94.0.1",
  });
  const { workstation, dir, password } = pair;
  try {
    const image = path.join(dir, "bench.img");
    await writeRandomFile(image, sizeMiB * 1024 * 1024);
    const driver = repoPath("dist/test/integration/update-client-driver.js");

    const push = (hash: "sha256" | "crc32") => async (): Promise<number> => {
      const command = {
        endpoint: { host: unitAddress, port: 80 },
        password,
        op: "push",
        target: "root",
        file: image,
        hash,
        chunkBytes: process.env.RTR7_BENCH_PUSH_CHUNK ? Number(process.env.RTR7_BENCH_PUSH_CHUNK) : undefined,
      };
      const { stdout } = await workstation.exec(process.execPath, [driver, JSON.stringify(command)], {
        timeoutMs: 300_000,
      });
      const outcome = JSON.parse(stdout.trim().split("\n").pop() ?? "{}") as {
        ok: boolean;
        result?: { ms: number };
        message?: string;
      };
      if (!outcome.ok || !outcome.result) throw new Error(`push failed: ${outcome.message}`);
      return outcome.result.ms;
    };
    const dd = () =>
      timeCommand("dd", [
        `if=${image}`,
        `of=${path.join(dir, "dd-target.img")}`,
        "bs=1M",
        "conv=fsync",
        "status=none",
      ]);

    // curl as the client: the same unit and upload, so the client's own share shows.
    const curl = (hash: "sha256" | "crc32") => async (): Promise<number> => {
      const started = performance.now();
      await workstation.exec(
        "curl",
        curlPushArgs(
          password,
          image,
          `http://${unitAddress}/update/root`,
          hash === "crc32" ? ["-H", "X-Gokrazy-Update-Hash: crc32"] : [],
        ),
        { timeoutMs: 300_000 },
      );
      return performance.now() - started;
    };
    const viaCurl = [
      await compare(
        `push ${sizeMiB} MiB, sha256`,
        { name: "rtr7", run: push("sha256") },
        { name: "curl", run: curl("sha256") },
        rounds,
      ),
      await compare(
        `push ${sizeMiB} MiB, crc32`,
        { name: "rtr7", run: push("crc32") },
        { name: "curl", run: curl("crc32") },
        rounds,
      ),
    ];
    printComparisons("The same pushes against curl -T as the client", "curl", viaCurl, sizeMiB * 1024 * 1024);

    const results = [
      await compare(
        `push ${sizeMiB} MiB, sha256`,
        { name: "rtr7", run: push("sha256") },
        { name: "dd", run: dd },
        rounds,
      ),
      await compare(
        `push ${sizeMiB} MiB, crc32`,
        { name: "rtr7", run: push("crc32") },
        { name: "dd", run: dd },
        rounds,
      ),
    ];
    printComparisons(
      "Image push into a process-mode unit's slot (veth) vs dd conv=fsync on the same file system",
      "dd",
      results,
      sizeMiB * 1024 * 1024,
    );

    const slot = path.join(dir, "writer-slot.img");
    await writeFile(slot, "");
    await truncate(slot, (sizeMiB + 16) * 1024 * 1024);
    const writer = [
      await compare(
        `write ${sizeMiB} MiB, read back`,
        { name: "rtr7", run: verifiedWrite(image, slot, true) },
        { name: "dd", run: dd },
        rounds,
      ),
      await compare(
        `write ${sizeMiB} MiB, no read-back`,
        { name: "rtr7", run: verifiedWrite(image, slot, false) },
        { name: "dd", run: dd },
        rounds,
      ),
    ];
    printComparisons(
      "The unit's verified writer alone (file to slot file, SHA-256) vs dd conv=fsync: what the read-back costs",
      "dd",
      writer,
      sizeMiB * 1024 * 1024,
    );
  } finally {
    await pair.destroy();
    await removeUnitImages();
  }
}

await main();
