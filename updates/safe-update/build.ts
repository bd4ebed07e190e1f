// safe-update's build step: the images of the new version, made by `rtr7
// image build` (in this process) or by the user's --build-command (through
// /bin/sh with RTR7_OUT_DIR and GOKR_DIR naming the run directory, its
// output kept in the run's logs), then checked to be there, and the version
// the new root image will report read from its /etc/rtr7/build.json.
import { execFile, spawn } from "node:child_process";
import { access } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { Rtr7Error, describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import { imageFiles, imageNames } from "../../lib/wire/images.js";
import { sha256OfFile, type Manifest } from "../../lib/wire/manifest.js";
import { writeFileAtomically } from "../../lib/atomic-file.js";
import { buildUnitImages } from "../image/build.js";
import { linkRelease, releaseMismatch, type Release } from "../release.js";
import type { UpdateRun } from "../runs.js";

const execFileAsync = promisify(execFile);

/** The version an image will report: /etc/rtr7/build.json inside root.img. */
export async function rootImageVersion(rootImage: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync("unsquashfs", ["-cat", rootImage, "etc/rtr7/build.json"], {
      encoding: "utf8",
      maxBuffer: 1 << 20,
    });
    const version = (JSON.parse(stdout) as { version?: unknown }).version;
    if (typeof version === "string" && version !== "") return version;
    throw new Error("build.json has no version");
  } catch (cause) {
    throw new Rtr7Error(
      "RTR7_ERR_IMAGE_BUILD",
      `read the new version from ${rootImage} (/etc/rtr7/build.json): ${describeError(cause)}`,
      { cause, hint: "Build the root image with `rtr7 image build`, which writes /etc/rtr7/build.json." },
    );
  }
}

/** Variables a build never sees: the unit's password (a build needs none, and may log its environment). */
export const secretVariables = ["RTR7_PASSWORD"] as const;

/** The build command's environment: ours without the secrets, plus where to put the images. */
export function buildEnvironment(env: NodeJS.ProcessEnv, outDir: string): NodeJS.ProcessEnv {
  const scrubbed = Object.fromEntries(
    Object.entries(env).filter(([name]) => !(secretVariables as readonly string[]).includes(name)),
  );
  return { ...scrubbed, RTR7_OUT_DIR: outDir, GOKR_DIR: outDir };
}

async function runBuildCommand(command: string, run: UpdateRun, log: Logger): Promise<void> {
  log.info({ command }, `Building with: ${command}`);
  const child = spawn("/bin/sh", ["-c", command], {
    env: buildEnvironment(process.env, run.dir),
    cwd: process.cwd(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.pipe(run.stdout, { end: false });
  child.stderr.pipe(run.stderr, { end: false });
  const code = await new Promise<number | string>((resolve) => {
    child.on("error", (error) => resolve(error.message));
    child.on("close", (exitCode, signal) => resolve(signal ?? exitCode ?? "unknown"));
  });
  if (code !== 0)
    throw new Rtr7Error(
      "RTR7_ERR_IMAGE_BUILD",
      `build command ${JSON.stringify(command)} failed (${typeof code === "number" ? `exit code ${code}` : code}); its output is in ${run.dir}/stderr.log`,
    );
}

async function requireImages(dir: string): Promise<void> {
  for (const name of imageNames) {
    try {
      await access(path.join(dir, name));
    } catch {
      throw new Rtr7Error("RTR7_ERR_IMAGE_BUILD", `the build left no ${name} in ${dir}`, {
        hint: "A --build-command must write mbr.img, boot.img and root.img into $RTR7_OUT_DIR.",
      });
    }
  }
}

/**
 * A build that wrote no manifest.json (gokrazy's tools write none) gets one
 * made from the images themselves, for this one unit: what the workstation
 * signs and the unit checks every byte against.
 */
async function ensureManifest(dir: string, hostname: string, version: string, log: Logger): Promise<void> {
  const file = path.join(dir, "manifest.json");
  if (
    await access(file).then(
      () => true,
      () => false,
    )
  )
    return;
  const images = [];
  for (const name of imageNames) images.push({ name, ...(await sha256OfFile(path.join(dir, name))) });
  const manifest: Manifest = { hostname, version, buildTime: new Date().toISOString(), images };
  await writeFileAtomically(file, JSON.stringify(manifest, null, 2) + "\n", { mode: 0o600 });
  log.info(`The build wrote no manifest.json: made one from its images (version ${version}).`);
}

/** Builds into the run directory; returns the version the new root image reports. */
export async function buildImages(options: {
  run: UpdateRun;
  hostname: string;
  buildCommand: string | undefined;
  log: Logger;
  /** The logger for the image builder (the caller's, untagged). */
  builderLog: Logger;
}): Promise<string> {
  const { run } = options;
  if (options.buildCommand) await runBuildCommand(options.buildCommand, run, options.log);
  else await buildUnitImages({ outDir: run.dir, hostname: options.hostname, log: options.builderLog });
  await requireImages(run.dir);
  const version = await rootImageVersion(path.join(run.dir, imageFiles.root));
  await ensureManifest(run.dir, options.hostname, version, options.log);
  return version;
}

/** The build step for a release built once: checks it fits the unit and links its images into the run. */
export async function useRelease(
  release: Release,
  run: UpdateRun,
  hostname: string,
  log: Logger,
): Promise<string> {
  const mismatch = releaseMismatch(release, hostname);
  if (mismatch) throw new Rtr7Error("RTR7_ERR_RELEASE", mismatch);
  await linkRelease(release, run.dir);
  log.info(
    { release: release.dir, version: release.version },
    `Installing release ${release.version} from ${release.dir}.`,
  );
  return release.version;
}
