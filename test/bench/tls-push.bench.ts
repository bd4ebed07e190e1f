// What HTTPS costs a push: the same 256 MiB image pushed into a
// process-mode unit's inactive slot by the unit target, over HTTPS on 443
// with the unit's pinned certificate against plain HTTP on 80, alternated
// in one run (SHA-256, then CRC-32). The ratio is plain HTTP's time over
// HTTPS's: HTTPS's share of plain HTTP's throughput (issue 14 aims for at
// least 0.9). Never asserts on time. Needs root and the image tools.
import { randomBytes, X509Certificate } from "node:crypto";
import { open, readFile } from "node:fs/promises";
import path from "node:path";
import { missingPrerequisite } from "../../lab/processes.js";
import { startLabUnitPair } from "../helpers/lab-unit-pair.js";
import { repoPath } from "../helpers/paths.js";
import { removeUnitImages, unitImages } from "../helpers/unit-images.js";
import { compare, printComparisons } from "./harness.js";

const sizeMiB = 256;
const unitAddress = "10.95.0.2";
const hostname = "bench-tls";
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

async function main(): Promise<void> {
  const missing = await missingPrerequisite(
    ["mksquashfs", "unsquashfs", "mkfs.fat", "mcopy", "syslinux"],
    "network namespaces and ports 80 and 443",
  );
  if (missing) {
    console.log(`tls push bench skipped: ${missing}`);
    return;
  }
  const images = await unitImages({ hostname, version: "v1" });
  const pair = await startLabUnitPair({
    label: "tlsp",
    hostname,
    imagesDir: images,
    unitAddress,
    workstationAddress: "10.95.0.1",
  });
  const { workstation, dir, password } = pair;
  try {
    const image = path.join(dir, "bench.img");
    await writeRandomFile(image, sizeMiB * 1024 * 1024);
    const fingerprint256 = new X509Certificate(
      await readFile(path.join(dir, "perm", "rtr7", "tls", "cert.pem")),
    ).fingerprint256;
    const driver = repoPath("dist/test/integration/update-client-driver.js");
    const push = (tls: boolean, hash: "sha256" | "crc32") => async (): Promise<number> => {
      const command = {
        endpoint: { host: unitAddress, ...(tls ? { tls: { fingerprint256, hostname } } : { port: 80 }) },
        password,
        op: "push",
        target: "root",
        file: image,
        hash,
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
    const results = [];
    for (const hash of ["sha256", "crc32"] as const)
      results.push(
        await compare(
          `push ${sizeMiB} MiB, ${hash}`,
          { name: "https", run: push(true, hash) },
          { name: "http", run: push(false, hash) },
          rounds,
        ),
      );
    printComparisons(
      "Image push into a process-mode unit over HTTPS (443, pinned) vs plain HTTP (80); ratio = HTTPS's share of HTTP's throughput",
      "plain HTTP",
      results,
      sizeMiB * 1024 * 1024,
    );
  } finally {
    await pair.destroy();
    await removeUnitImages();
  }
}

await main();
