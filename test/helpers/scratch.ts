// Temporary directories for a test, removed when it ends.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { cliEntry } from "./paths.js";
import type { TestContext } from "node:test";

export async function scratchDir(t: TestContext, label: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), `rtr7-${label}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Small stand-in images (random bytes) for recoveries that do not write a disk. */
export async function fakeImages(dir: string): Promise<{ mbr: string; boot: string; root: string }> {
  const images = {
    mbr: path.join(dir, "mbr.img"),
    boot: path.join(dir, "boot.img"),
    root: path.join(dir, "root.img"),
  };
  await writeFile(images.mbr, randomBytes(512));
  await writeFile(images.boot, randomBytes(256 * 1024));
  await writeFile(images.root, randomBytes(1024 * 1024));
  return images;
}

/** Parses the JSON lines a --json run printed, skipping anything else. */
export function jsonEvents(output: string): Record<string, unknown>[] {
  return output
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** The argv of `node bin/run.js recover ...` for a test run with the given images. */
export function recoverArgs(options: {
  interfaceName: string;
  hostname: string;
  images: { mbr: string; boot: string; root: string };
  kernel?: string;
  /** "default": let rtr7 serve its own recovery initramfs (no --initrd). */
  initrd?: string;
  extra?: string[];
}): string[] {
  return [
    cliEntry,
    "recover",
    `--interface=${options.interfaceName}`,
    `--hostname=${options.hostname}`,
    `--mbr=${options.images.mbr}`,
    `--boot=${options.images.boot}`,
    `--root=${options.images.root}`,
    // Tests that never boot a kernel serve stand-in files as kernel and initrd.
    `--kernel=${options.kernel ?? options.images.root}`,
    ...(options.initrd === "default" ? [] : [`--initrd=${options.initrd ?? options.images.boot}`]),
    "--no-reset",
    ...(options.extra ?? []),
  ];
}
