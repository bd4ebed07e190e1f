// Unit images for tests, built with `rtr7 image build`'s code into a
// scratch directory: one build per (hostname, version, additions) per test
// process, shared by the tests of a file. Without a hostname: a fleet release.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { buildUnitImages } from "../../updates/image/build.js";

const built = new Map<string, Promise<string>>();
const made: string[] = [];

/** A directory holding mbr.img, boot.img, root.img and manifest.json. */
export function unitImages(options: {
  /** The unit the images are for; none builds a fleet release for any unit. */
  hostname?: string;
  version: string;
  add?: { source: string; destination: string }[];
  /** Another program as /rtr7/init (a unit that never comes up). */
  routerEntry?: string;
  /** Another kernel for boot.img (default the newest /boot/vmlinuz-*). */
  kernel?: string;
  /**
   * The manifest's buildTime (default now). Releases built at once finish
   * in any order; a test that updates v1 → v2 → v3 on units that trust a key
   * gives them their versions' order, as builds one after another would.
   */
  buildTime?: string;
}): Promise<string> {
  const key = JSON.stringify(options);
  let dir = built.get(key);
  if (!dir) {
    dir = (async () => {
      const out = await mkdtemp(
        path.join(tmpdir(), `rtr7-images-${options.hostname ?? "fleet"}-${options.version}-`),
      );
      made.push(out);
      await buildUnitImages({
        outDir: out,
        hostname: options.hostname,
        version: options.version,
        add: options.add,
        routerEntry: options.routerEntry,
        kernel: options.kernel,
        ...(options.buildTime ? { buildTime: new Date(options.buildTime) } : {}),
      });
      return out;
    })();
    built.set(key, dir);
  }
  return dir;
}

/** Removes every image directory built so far (call from an after hook). */
export async function removeUnitImages(): Promise<void> {
  await Promise.all(made.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  built.clear();
}
