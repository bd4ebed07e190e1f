// A tiny but real fleet release for the simulated units (lab/sim-fleet.ts):
// mbr.img (440 bytes of boot code), boot.img (a few KiB), root.img a real
// squashfs holding etc/rtr7/build.json (safe-update reads the new version
// from it with unsquashfs), and manifest.json with each image's size and
// SHA-256, `anyUnit: true` and the version, as `rtr7 image build` writes a
// fleet release. The simulated units only hash what they are sent, so a
// full image build (kernel, FAT, 30 MB of squashfs) would only slow a bench
// down; the bytes differ per version so each version's hashes differ.
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { imageFiles, imageNames } from "../lib/wire/images.js";
import { sha256OfFile, type Manifest } from "../lib/wire/manifest.js";
import { run } from "./processes.js";

/** `size` bytes that depend on `seed`, so two versions never share an image. */
function seeded(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash("sha256").update(seed).digest();
  for (let offset = 0; offset < size; offset += block.length) {
    block.copy(out, offset);
    block = createHash("sha256").update(block).digest();
  }
  return out;
}

/** Writes the release into `dir` (created); returns `dir`. */
export async function makeSimRelease(dir: string, version: string, options: { bootBytes?: number } = {}) {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, imageFiles.mbr), seeded(`mbr ${version}`, 440));
  await writeFile(path.join(dir, imageFiles.boot), seeded(`boot ${version}`, options.bootBytes ?? 8192));
  const tree = await mkdtemp(path.join(tmpdir(), "rtr7-sim-root-"));
  try {
    await mkdir(path.join(tree, "etc", "rtr7"), { recursive: true });
    await writeFile(
      path.join(tree, "etc", "rtr7", "build.json"),
      `${JSON.stringify({ version, hostname: "", anyUnit: true })}\n`,
    );
    const root = path.join(dir, imageFiles.root);
    await rm(root, { force: true });
    await run("mksquashfs", [tree, root, "-noappend", "-quiet", "-all-root", "-no-progress"]);
  } finally {
    await rm(tree, { recursive: true, force: true });
  }
  const images = [];
  for (const name of imageNames) images.push({ name, ...(await sha256OfFile(path.join(dir, name))) });
  const manifest: Manifest = { anyUnit: true, version, buildTime: new Date().toISOString(), images };
  await writeFile(path.join(dir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  return dir;
}
