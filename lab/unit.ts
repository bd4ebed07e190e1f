// A virtual unit as ordinary processes (`rtr7 lab unit`). Its directory
// holds what a unit's disk holds: boot.img (the FAT boot partition, the very
// image `rtr7 image build` made), root-a.img and root-b.img (the 500 MiB
// slots, sparse), disk-mbr.img (sector 0) and perm/. This module plays the
// firmware and the boot loader: it reads syslinux.cfg's DEFAULT from
// boot.img (or takes the slot a kexec asked for in run/next-boot.json),
// extracts that slot's squashfs and runs the /rtr7/init found in it, so a
// broken image is as broken here as on a unit. When the suite exits without
// asking for a reboot, that is this unit's kernel panic: after a pause it
// boots the committed slot, as panic=10 does.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { access, copyFile, mkdir, open, readFile, rename, rm, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { Rtr7Error } from "../lib/errors.js";
import { silentLogger, type Logger } from "../lib/log.js";
import { parseManifest, sha256OfFile } from "../lib/wire/manifest.js";
import { parsePublicKey } from "../lib/trust/minisign.js";
import { addTrustedKey } from "../lib/trust/trusted-keys.js";
import { installedRelease, recordInstalledRelease } from "../lib/trust/installed-release.js";
import { manifestSignatureFile } from "../lib/trust/release-signature.js";
import { partitionTableBytes, planLayout, diskIdentifier, rootSlotBytes } from "../lib/wire/disk-layout.js";
import { readBootConfig } from "../router/boot/boot-partition.js";
import { hostnameFileText, permHostnameFile } from "../lib/wire/unit-hostname.js";
import type { NextBoot } from "../router/boot/boot-control.js";
import { nextBootFile, processUnitPaths } from "../router/process-mode.js";
import { isSlot, type Slot } from "../router/unit.js";
import { run } from "./processes.js";

export interface LabUnitOptions {
  dir: string;
  hostname: string;
  /** Address the services listen on; default 127.0.0.1. */
  address?: string;
  /** Images (mbr.img, boot.img, root.img, manifest.json) to fill a new directory from. */
  imageDir?: string;
  log?: Logger;
  /** Where the suite's console lines go; default this process's stdout. */
  console?: (line: string) => void;
  /** Pause after a "panic" before booting again (panic=10 on a unit); default 1 s. */
  panicPauseMs?: number;
  /**
   * Public keys (minisign files' text) a new directory's unit trusts, as
   * `rtr7 recover` installs the workstation's key into a unit that trusts none.
   */
  trustKeys?: string[];
}

const unitFile = (dir: string): string => path.join(dir, "unit.json");

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

/** Fills a new unit directory from built images, checking each against the manifest, as a recovery would. */
export async function prepareUnitDir(
  dir: string,
  hostname: string,
  imageDir: string | undefined,
  trustKeys: string[] = [],
): Promise<boolean> {
  if (await exists(unitFile(dir))) return false;
  if (!imageDir)
    throw new Rtr7Error(
      "RTR7_ERR_LAB_UNIT",
      `start the virtual unit in ${dir}: it is not a unit directory yet (no unit.json) and no --image-dir was given`,
    );
  let manifestText: string;
  try {
    manifestText = await readFile(path.join(imageDir, "manifest.json"), "utf8");
  } catch (cause) {
    throw new Rtr7Error("RTR7_ERR_LAB_UNIT", `read ${imageDir}/manifest.json: ${(cause as Error).message}`, {
      cause,
    });
  }
  const manifest = parseManifest(JSON.parse(manifestText));
  for (const name of ["mbr.img", "boot.img", "root.img"]) {
    const entry = manifest.images.find((image) => image.name === name);
    const file = path.join(imageDir, name);
    const actual = await sha256OfFile(file).catch(() => undefined);
    if (!entry || !actual || actual.sha256 !== entry.sha256)
      throw new Rtr7Error(
        "RTR7_ERR_LAB_UNIT",
        `fill ${dir} from ${imageDir}: ${name} ${actual ? "does not match manifest.json" : "is missing"}`,
      );
  }
  const paths = processUnitPaths(dir, "");
  await mkdir(paths.perm, { recursive: true });
  await mkdir(paths.run, { recursive: true });
  // As a recovery does: the unit's name, whichever release it runs.
  await writeFile(path.join(paths.perm, permHostnameFile), hostnameFileText(hostname));
  const trusted = trustKeys.map((text, index) => parsePublicKey(text, `trusted key ${index + 1}`));
  for (const key of trusted) await addTrustedKey(paths.perm, key);
  const signature = await readFile(path.join(imageDir, manifestSignatureFile), "utf8").catch(() => undefined);
  await recordInstalledRelease(
    paths.perm,
    "a",
    installedRelease(Buffer.from(manifestText), signature, trusted, new Date()),
  );
  await copyFile(path.join(imageDir, "boot.img"), paths.boot);
  await copyFile(path.join(imageDir, "root.img"), paths.roots.a);
  await truncate(paths.roots.a, rootSlotBytes);
  await writeFile(paths.roots.b, "");
  await truncate(paths.roots.b, rootSlotBytes);
  const sector = Buffer.alloc(512);
  (await readFile(path.join(imageDir, "mbr.img"))).copy(sector, 0, 0, 440);
  partitionTableBytes(planLayout(2 * 1024 ** 3), diskIdentifier(hostname)).copy(sector, 440);
  await writeFile(paths.mbr, sector);
  await writeFile(
    unitFile(dir),
    JSON.stringify({ hostname, created: new Date().toISOString(), from: path.resolve(imageDir) }, null, 2) +
      "\n",
  );
  return true;
}

/** The squashfs superblock's bytes_used, or undefined when the slot holds no squashfs. */
async function squashfsBytes(slotFile: string): Promise<number | undefined> {
  const handle = await open(slotFile, "r");
  try {
    const superblock = Buffer.alloc(96);
    await handle.read(superblock, 0, 96, 0);
    if (superblock.toString("latin1", 0, 4) !== "hsqs") return undefined;
    return Number(superblock.readBigUInt64LE(40));
  } finally {
    await handle.close();
  }
}

async function prefixDigest(file: string, bytes: number): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file, { start: 0, end: bytes - 1, highWaterMark: 1 << 20 }))
    hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Extracts a slot's root file system (cached by content) and returns its directory. */
async function extractSlot(dir: string, slotFile: string): Promise<string> {
  const bytes = await squashfsBytes(slotFile);
  if (bytes === undefined) throw new Error(`${path.basename(slotFile)} holds no squashfs root image`);
  const digest = (await prefixDigest(slotFile, bytes)).slice(0, 16);
  const root = path.join(dir, "roots", digest);
  if (await exists(path.join(root, "rtr7", "init"))) return root;
  const temporary = `${root}.tmp-${process.pid}`;
  await rm(temporary, { recursive: true, force: true });
  await mkdir(path.dirname(root), { recursive: true });
  await run("unsquashfs", ["-no-progress", "-quiet", "-d", temporary, slotFile], { timeoutMs: 120_000 });
  await rm(root, { recursive: true, force: true });
  await rename(temporary, root);
  return root;
}

async function committedSlot(bootImage: string): Promise<Slot> {
  return (await readBootConfig(bootImage)).defaultSlot;
}

async function takeNextBoot(dir: string): Promise<NextBoot | undefined> {
  const file = nextBootFile(dir);
  try {
    const next = JSON.parse(await readFile(file, "utf8")) as NextBoot;
    await rm(file, { force: true });
    return isSlot(next.slot) ? next : undefined;
  } catch {
    return undefined;
  }
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // ESRCH: nothing left of it.
  }
}

export interface LabUnit {
  /** Resolves when the unit has stopped (after stop(), or when no slot can boot). */
  readonly done: Promise<void>;
  /** How many times the suite was started (boots). */
  boots(): number;
  stop(): Promise<void>;
}

export async function startLabUnit(options: LabUnitOptions): Promise<LabUnit> {
  const dir = path.resolve(options.dir);
  const log = (options.log ?? silentLogger()).child({ subsystem: "lab" });
  const say = options.console ?? ((line: string) => void process.stdout.write(line + "\n"));
  if (await prepareUnitDir(dir, options.hostname, options.imageDir, options.trustKeys))
    say(`lab: filled ${dir} from ${options.imageDir ?? ""}`);
  const paths = processUnitPaths(dir, "");
  await rm(nextBootFile(dir), { force: true });
  let stopping = false;
  let current: ChildProcess | undefined;
  let bootCount = 0;
  let wake: (() => void) | undefined;
  const pause = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  const bootOnce = async (next: NextBoot | undefined): Promise<"reboot" | "panic" | "stopped"> => {
    const committed = await committedSlot(paths.boot);
    const slot = next?.kexec ? next.slot : committed;
    const trial = next?.kexec === true && next.trial;
    let root: string;
    try {
      root = await extractSlot(dir, paths.roots[slot]);
    } catch (error) {
      say(`lab: slot ${slot} does not boot: ${(error as Error).message}`);
      if (slot === committed)
        throw new Rtr7Error(
          "RTR7_ERR_LAB_UNIT",
          `boot ${options.hostname}: its committed slot ${slot} does not boot (${(error as Error).message})`,
          {
            hint: "The unit is bricked as a real one would be: fill a new directory from images (--image-dir).",
          },
        );
      return "panic";
    }
    const node = (await exists(path.join(root, "bin", "node")))
      ? path.join(root, "bin", "node")
      : process.execPath;
    const args = [
      path.join(root, "rtr7", "init"),
      "supervisor",
      "--dir",
      dir,
      "--address",
      options.address ?? "127.0.0.1",
      "--slot",
      slot,
      "--hostname",
      options.hostname,
    ];
    if (trial) args.push("--trial-deadline-ms", String(next?.trialDeadlineMs ?? 600_000));
    bootCount += 1;
    log.info({ slot, trial, boot: bootCount }, `Booting slot ${slot}${trial ? " on trial" : ""}.`);
    say(`lab: boot ${bootCount}: slot ${slot}${trial ? " (trial)" : ""}${next?.kexec ? " by kexec" : ""}`);
    // Its own process group, so that whatever the suite leaves behind when it
    // "panics" (services it started) can be ended with it, as a reset would.
    const child = spawn(node, args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
    current = child;
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream, crlfDelay: Infinity }).on("line", say);
    }
    const code = await new Promise<string>((resolve) => {
      child.on("error", (error) => resolve(error.message));
      child.on("close", (exitCode, signal) => resolve(signal ?? String(exitCode)));
    });
    current = undefined;
    killGroup(child.pid);
    if (stopping) return "stopped";
    if (await exists(nextBootFile(dir))) return "reboot";
    say(`lab: the suite on slot ${slot} exited (${String(code)}) without a reboot: like a kernel panic`);
    return "panic";
  };

  const loop = async (): Promise<void> => {
    let next: NextBoot | undefined;
    while (!stopping) {
      const outcome = await bootOnce(next);
      if (outcome === "stopped") break;
      if (outcome === "reboot") {
        next = await takeNextBoot(dir);
        continue;
      }
      next = undefined;
      await pause(options.panicPauseMs ?? 1000);
    }
  };
  const done = loop();
  return {
    done,
    boots: () => bootCount,
    async stop() {
      stopping = true;
      wake?.();
      const child = current;
      if (child && child.exitCode === null && child.signalCode === null) {
        const closed = new Promise((resolve) => child.once("close", resolve));
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await closed;
        clearTimeout(timer);
      }
      await done.catch(() => undefined);
    },
  };
}
