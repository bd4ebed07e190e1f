// `rtr7 image build`: the unit's three images and their manifest, built the
// same way every time. root.img (squashfs: the router suite, node, tools,
// kernel modules, --add files), boot.img (FAT32: syslinux, its config, the
// kernel and the boot initrd), mbr.img (syslinux's MBR boot code) and
// manifest.json. Equal inputs give byte-identical images (fixed time stamps,
// sorted trees, no build time inside), and the default version is derived
// from the inputs. Everything is written in a temporary directory inside the
// output directory and renamed into place only once all of it succeeded, so
// a failed build leaves the previous images as they were.
//
// With a hostname the images are for that one unit, as gokrazy builds them:
// build.json names it and syslinux.cfg's root= names the disk identifier
// derived from it. Without one they are a fleet release that boots on any
// unit: build.json and the manifest say `"anyUnit": true` and no hostname,
// root= names disk 0, and whoever writes boot.img to a unit puts that unit's
// disk identifier in (recovery-init, the update API); the unit takes its
// hostname from /perm/hostname.
import { copyFile, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { commitFile } from "../../lib/atomic-file.js";
import { Rtr7Error, isRtr7Error } from "../../lib/errors.js";
import { formatBytes, silentLogger, type Logger } from "../../lib/log.js";
import { sha256OfFile, type Manifest } from "../../lib/wire/manifest.js";
import type { SigningKey } from "../../lib/trust/minisign.js";
import { manifestSignatureFile } from "../../lib/trust/release-signature.js";
import { signReleaseDir } from "../keys.js";
import { diskIdentifier, mbrBootCodeBytes } from "../../lib/wire/disk-layout.js";
import { checkedHostname } from "../../lib/wire/names.js";
import { bundleNodeProgram, nodeFacts, type BundleFormat } from "./initramfs/bundle.js";
import { sharedLibraries } from "./initramfs/elf-deps.js";
import { kernelRelease } from "./initramfs/kernel-release.js";
import { recoveryModuleClosure } from "./initramfs/kernel-modules.js";
import { treeDigest } from "./initramfs/tree.js";
import { renderBootConfig, slotBootConfig } from "../../lib/wire/boot-config.js";
import { newestKernel } from "../../lib/host-kernel.js";
import { additionEntries, type ImageAddition } from "./additions.js";
import { makeBootImage } from "./boot-image.js";
import { bootInitrdEntries, writeBootInitrd } from "./boot-initrd.js";
import { defaultRootCompression, makeRootImage, type RootCompression } from "./root-image.js";
import { addBuildInfo, rootTree } from "./root-tree.js";
import { stageTree } from "./staging.js";
import { findTools, imageTools } from "./tools.js";

/** Bump when the images change in a way the hashed inputs do not show. */
export const imageBuilderVersion = "1";

/** 2020-01-01T00:00:00Z: every time stamp in the images. */
export const imageEpoch = 1577836800;

export interface BuildUnitImagesOptions {
  /** Where mbr.img, boot.img, root.img and manifest.json go (created if missing). */
  outDir: string;
  /** The one unit the images are for; without it, a fleet release for any unit. */
  hostname?: string;
  /** Default: "g" and 12 hex digits of a digest over every input. */
  version?: string;
  /** Default: the newest /boot/vmlinuz-*. */
  kernel?: string;
  /** Default: /lib/modules/<the kernel's release>. */
  modulesDir?: string;
  add?: ImageAddition[];
  /** The compiled router suite to bundle as /rtr7/init; default dist/router/main.js. */
  routerEntry?: string;
  /** root.img's compressor; default lz4 (fastest to boot). */
  compression?: RootCompression;
  /** The node that goes into root.img; default the running one. */
  node?: string;
  /**
   * The fleet's key: manifest.json is signed into manifest.json.minisig.
   * Without one, a signature left from an earlier build is removed.
   */
  signingKey?: SigningKey;
  /**
   * The manifest's buildTime, which orders releases for the units' rollback
   * protection (a release built before the one a unit runs is a downgrade);
   * default now.
   */
  buildTime?: Date;
  log?: Logger;
}

export interface UnitImagePaths {
  mbr: string;
  boot: string;
  root: string;
  manifest: string;
}

export interface BuiltUnitImages {
  manifest: Manifest;
  /** The key manifest.json.minisig is signed with, when it is. */
  signedBy?: string;
  paths: UnitImagePaths;
  version: string;
}

/** dist/router/main.js, from this compiled module in dist/updates/image/. */
export function defaultRouterEntry(): string {
  return fileURLToPath(new URL("../../router/main.js", import.meta.url));
}

const versionPattern = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

function checkNames(hostname: string | undefined, version: string | undefined): void {
  if (hostname !== undefined) checkedHostname(hostname);
  if (version !== undefined && !versionPattern.test(version)) {
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `build the unit images: --version ${JSON.stringify(version)} is not a version (want up to 64 of A-Z a-z 0-9 . _ + -, starting with a letter or digit)`,
    );
  }
}

export async function buildUnitImages(options: BuildUnitImagesOptions): Promise<BuiltUnitImages> {
  const log = (options.log ?? silentLogger()).child({ subsystem: "image" });
  const started = Date.now();
  checkNames(options.hostname, options.version);
  const tools = await findTools(imageTools);
  if ((await sharedLibraries(tools.busybox)).length > 0) {
    throw new Rtr7Error(
      "RTR7_ERR_TOOL_MISSING",
      `build the unit images: ${tools.busybox} is linked dynamically; the boot initrd needs a static busybox`,
      { hint: "Install the Debian package busybox-static (apt-get install busybox-static)." },
    );
  }
  const kernel = options.kernel ?? newestKernel();
  const release = await kernelRelease(kernel);
  const modulesDir = options.modulesDir ?? path.join("/lib/modules", release);
  if (path.basename(path.resolve(modulesDir)) !== release) {
    log.warn(
      { kernel: release, modulesDir },
      `The modules in ${modulesDir} may not be for kernel ${release}; the unit will refuse them if not.`,
    );
  }
  const additions = [];
  for (const addition of options.add ?? []) {
    additions.push({
      label: `${addition.source}:${addition.destination}`,
      entries: await additionEntries(addition),
    });
  }
  const node = options.node ?? process.execPath;
  const compression = options.compression ?? defaultRootCompression;
  const [facts, modules, kernelHash] = await Promise.all([
    nodeFacts(node),
    recoveryModuleClosure(modulesDir, log),
    sha256OfFile(kernel),
  ]);
  const bundleFormat: BundleFormat = facts.runsExtensionlessEsm ? "esm" : "cjs";
  const init = await bundleNodeProgram(options.routerEntry ?? defaultRouterEntry(), bundleFormat, {
    what: "the router suite",
    outfile: "rtr7-init.js",
    errorCode: "RTR7_ERR_IMAGE_BUILD",
    into: "the root image",
    missingEntryHint: "Run `npm run build` first, which compiles router/main.ts to dist/router/main.js.",
  });

  const tree = await rootTree({
    init,
    node,
    busybox: tools.busybox,
    mtools: tools.mtools,
    kexec: tools.kexec,
    modules,
    modulesDir,
    kernelRelease: release,
    additions,
  });
  const hostname = options.hostname;
  const forWhom = hostname === undefined ? "any unit (a fleet release)" : hostname;
  const digest = await treeDigest(tree.entries(), {
    builderVersion: imageBuilderVersion,
    // A hostname cannot contain a space, so no per-host build digests like a fleet release.
    hostname: hostname ?? "any unit",
    kernelRelease: release,
    kernelSha256: kernelHash.sha256,
    compression,
    bundleFormat,
  });
  const version = options.version ?? `g${digest.slice(0, 12)}`;
  addBuildInfo(tree, {
    ...(hostname === undefined ? { anyUnit: true as const } : { hostname }),
    version,
    kernelRelease: release,
    nodeVersion: facts.version,
    builderVersion: imageBuilderVersion,
  });
  log.info(
    {
      ...(hostname === undefined ? { anyUnit: true } : { hostname }),
      version,
      kernel: release,
      node: facts.version,
      modules: modules.load.length,
    },
    `Building images for ${forWhom} version ${version}: kernel ${release}, node ${facts.version}, ` +
      `${modules.load.length} kernel modules, root.img with ${compression}.`,
  );

  const outDir = path.resolve(options.outDir);
  await mkdir(outDir, { recursive: true });
  const work = await mkdtemp(path.join(outDir, ".rtr7-image-build-"));
  const paths: UnitImagePaths = {
    mbr: path.join(outDir, "mbr.img"),
    boot: path.join(outDir, "boot.img"),
    root: path.join(outDir, "root.img"),
    manifest: path.join(outDir, "manifest.json"),
  };
  const built: UnitImagePaths = {
    mbr: path.join(work, "mbr.img"),
    boot: path.join(work, "boot.img"),
    root: path.join(work, "root.img"),
    manifest: path.join(work, "manifest.json"),
  };
  try {
    const timed = async (name: string, make: () => Promise<void>, file: string): Promise<void> => {
      const begun = Date.now();
      await make();
      const bytes = (await stat(file)).size;
      log.info(
        { image: name, bytes, ms: Date.now() - begun },
        `Made ${name} (${formatBytes(bytes)}) in ${((Date.now() - begun) / 1000).toFixed(1)} s.`,
      );
    };
    const makeRoot = async (): Promise<void> => {
      const staging = path.join(work, "root-tree");
      await mkdir(staging);
      await stageTree(staging, tree.entries());
      await makeRootImage({
        mksquashfs: tools.mksquashfs,
        stagingDir: staging,
        output: built.root,
        epoch: imageEpoch,
        compression,
      });
      await rm(staging, { recursive: true, force: true });
    };
    const makeBoot = async (): Promise<void> => {
      const initrd = path.join(work, "initrd.img");
      await writeBootInitrd(
        bootInitrdEntries({ busybox: tools.busybox, modules, modulesDir, kernelRelease: release }),
        initrd,
      );
      await makeBootImage({
        tools,
        output: built.boot,
        workDir: work,
        syslinuxConfig: renderBootConfig(
          slotBootConfig({
            diskId: hostname === undefined ? 0 : diskIdentifier(hostname),
            defaultSlot: "a",
          }),
        ),
        kernel,
        initrd,
        epoch: imageEpoch,
      });
    };
    const makeMbr = async (): Promise<void> => {
      const size = (await stat(tools.mbrCode)).size;
      if (size !== mbrBootCodeBytes) {
        throw new Rtr7Error(
          "RTR7_ERR_IMAGE_BUILD",
          `make mbr.img: ${tools.mbrCode} holds ${size} bytes, want ${mbrBootCodeBytes} (syslinux's mbr.bin)`,
        );
      }
      await copyFile(tools.mbrCode, built.mbr);
    };
    // mksquashfs keeps every CPU busy for the longest; the small images are made meanwhile.
    const results = await Promise.allSettled([
      timed("root.img", makeRoot, built.root),
      timed("boot.img", makeBoot, built.boot),
      timed("mbr.img", makeMbr, built.mbr),
    ]);
    const failed = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
    if (failed) throw failed.reason;

    const images = [];
    for (const [name, file] of [
      ["mbr.img", built.mbr],
      ["boot.img", built.boot],
      ["root.img", built.root],
    ] as const) {
      images.push({ name, ...(await sha256OfFile(file)) });
    }
    const manifest: Manifest = {
      ...(hostname === undefined ? { anyUnit: true } : { hostname }),
      version,
      buildTime: (options.buildTime ?? new Date()).toISOString(),
      images,
    };
    await writeFile(built.manifest, JSON.stringify(manifest, null, 2) + "\n");
    // An old signature never stands beside new images, even for a moment.
    await rm(path.join(outDir, manifestSignatureFile), { force: true });
    // The manifest goes last: until it is renamed, the previous one still names the previous images.
    for (const key of ["mbr", "boot", "root", "manifest"] as const) await commitFile(built[key], paths[key]);
    if (options.signingKey) {
      await signReleaseDir(outDir, options.signingKey);
      log.info(
        { keyId: options.signingKey.publicKey.keyId },
        `Signed manifest.json with key ${options.signingKey.publicKey.keyId} (${manifestSignatureFile}).`,
      );
    }
    log.info(
      { dir: outDir, ms: Date.now() - started },
      `Built the images for ${forWhom} in ${outDir} in ${((Date.now() - started) / 1000).toFixed(1)} s.`,
    );
    return { manifest, paths, version, signedBy: options.signingKey?.publicKey.keyId };
  } catch (cause) {
    if (isRtr7Error(cause)) throw cause;
    throw new Rtr7Error(
      "RTR7_ERR_IMAGE_BUILD",
      `build the unit images in ${outDir}: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
