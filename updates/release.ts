// A release as a rollout installs it: a directory made by `rtr7 image build`
// (mbr.img, boot.img, root.img, manifest.json), checked once before any unit
// is touched (every image whole and matching its manifest entry), then
// linked into each unit's run directory, so a thousand units cost one check
// and no copies. A fleet release (manifest anyUnit) fits every unit; a
// per-unit build (manifest hostname H, as gokrazy builds) fits only H.
import { access, copyFile, link, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error, describeError } from "../lib/errors.js";
import { imageNames } from "../lib/wire/images.js";
import { parseManifest, sha256OfFile, type Manifest } from "../lib/wire/manifest.js";
import { manifestSignatureFile } from "../lib/trust/release-signature.js";

export interface Release {
  dir: string;
  version: string;
  /** True for a fleet release; false for an image built for one hostname. */
  anyUnit: boolean;
  /** The one hostname a per-unit build is for. */
  hostname: string | undefined;
  manifest: Manifest;
}

const releaseFiles = [...imageNames, "manifest.json"] as const;

/** Reads DIR/manifest.json and checks every image against it; RTR7_ERR_RELEASE when anything is off. */
export async function loadRelease(dir: string): Promise<Release> {
  const absolute = path.resolve(dir);
  let manifest: Manifest;
  try {
    manifest = parseManifest(JSON.parse(await readFile(path.join(absolute, "manifest.json"), "utf8")));
  } catch (error) {
    throw new Rtr7Error(
      "RTR7_ERR_RELEASE",
      `read the release's manifest ${path.join(absolute, "manifest.json")}: ${describeError(error)}`,
      { cause: error },
    );
  }
  for (const name of imageNames) {
    const entry = manifest.images.find((image) => image.name === name);
    if (!entry) throw new Rtr7Error("RTR7_ERR_RELEASE", `the release in ${absolute} lists no ${name}`);
    const actual = await sha256OfFile(path.join(absolute, name)).catch((error: unknown) => {
      throw new Rtr7Error("RTR7_ERR_RELEASE", `read ${path.join(absolute, name)}: ${describeError(error)}`);
    });
    if (actual.size !== entry.size || actual.sha256 !== entry.sha256)
      throw new Rtr7Error(
        "RTR7_ERR_RELEASE",
        `${path.join(absolute, name)} does not match manifest.json (${actual.size} bytes, sha256 ${actual.sha256.slice(0, 16)}…; the manifest says ${entry.size} bytes, ${entry.sha256.slice(0, 16)}…)`,
      );
  }
  if (typeof manifest.version !== "string" || manifest.version === "")
    throw new Rtr7Error("RTR7_ERR_RELEASE", `the release's manifest in ${absolute} names no version`);
  const anyUnit = manifest.anyUnit === true || manifest.hostname === undefined;
  return { dir: absolute, version: manifest.version, anyUnit, hostname: manifest.hostname, manifest };
}

/** Undefined when the release fits the unit; otherwise why not. */
export function releaseMismatch(release: Release, hostname: string): string | undefined {
  if (release.anyUnit || release.hostname === hostname) return undefined;
  return `the release ${release.version} in ${release.dir} was built for ${release.hostname ?? "?"}, not ${hostname} (build it without --hostname for every unit)`;
}

/**
 * Puts the release's files into a run directory: hard links where the file
 * system allows, copies otherwise; its manifest's signature too, when it has
 * one (a stale one in the run directory is removed either way).
 */
export async function linkRelease(release: Release, runDir: string): Promise<void> {
  await rm(path.join(runDir, manifestSignatureFile), { force: true });
  const signed = await access(path.join(release.dir, manifestSignatureFile)).then(
    () => true,
    () => false,
  );
  for (const name of [...releaseFiles, ...(signed ? [manifestSignatureFile] : [])]) {
    const from = path.join(release.dir, name);
    const to = path.join(runDir, name);
    await rm(to, { force: true });
    await link(from, to).catch(() => copyFile(from, to));
  }
}
