// PUT /update/boot and /update/bootonly: a whole boot partition image
// arrives (gokrazy's clients and rtr7's send the same), but what changes on
// the unit is one slot's kernel and boot initrd. The body is staged in a
// temp file under paths.run first, so an upload that ends early never
// touches the boot partition. Then:
//  - the inactive slot (the one PUT /update/root writes; never the
//    committed one, never the fallback of a trial) gets the image's kernel
//    and initrd for that slot, in its own directory (b/vmlinuz,
//    b/initrd.img), written with mtools beside the committed slot's files,
//    only where they differ, fsynced and read back; no boot reads those
//    files until a switch or testboot names the slot, and
//    /perm/rtr7/boot-files.json records them "writing" until they are
//    whole, so switch and testboot refuse the slot after a cut (slot-state.ts);
//  - its label in syslinux.cfg (the image's kernel parameters, with root=
//    naming this unit's own disk) is rewritten as one sector in place
//    (router/boot/boot-partition.ts writeBootConfig), DEFAULT unchanged.
// A power cut at any byte leaves the committed slot's kernel, initrd and
// label as they were. The boot loaders (ldlinux.sys, the EFI loader) are
// never rewritten by an update: that is a recovery's job.
//
// The whole image is copied over the partition instead, as gokrazy does
// (not power-safe), when the unit's syslinux.cfg does not sit in one sector
// (a boot partition rtr7 did not make), when the image has no label for
// the slot (not an rtr7 image), or when /perm/rtr7/update.json says
// {"bootWrite": "image"}. The reply is the hash of the body as received,
// once every file written from it has been read back equal.
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { fsDisk } from "../../lib/disk/device.js";
import { Rtr7Error, describeError } from "../../lib/errors.js";
import { slotBootFiles, withRootDisk, type BootConfig, type BootLabel } from "../../lib/wire/boot-config.js";
import { partitionTableOffset } from "../../lib/wire/disk-layout.js";
import {
  bootConfigSector,
  readBootConfig,
  readBootFile,
  writeBootConfig,
  writeBootFile,
} from "../boot/boot-partition.js";
import { otherSlot, type Slot } from "../unit.js";
import {
  emptyUpload,
  inactiveUploadSlot,
  type UploadContext,
  type UploadOutcome,
  type UploadRequest,
} from "./uploads.js";
import { writeBootFilesState } from "./slot-state.js";
import { hashWithSha256, readAt, targetCapacity, writeUpload, type HashAlgorithm } from "./write-target.js";

/** How a boot upload reaches the partition: the slot's files (default) or the whole image. */
export type BootWrite = "files" | "image";

/** /perm/rtr7/update.json's bootWrite, "files" when the file or the key is missing. */
export async function readBootWrite(permDir: string): Promise<BootWrite> {
  try {
    const parsed = JSON.parse(await readFile(path.join(permDir, "rtr7", "update.json"), "utf8")) as {
      bootWrite?: unknown;
    };
    return parsed.bootWrite === "image" ? "image" : "files";
  } catch {
    return "files";
  }
}

export async function uploadBoot(context: UploadContext, request: UploadRequest): Promise<UploadOutcome> {
  const disk = context.disk ?? fsDisk();
  const capacity = await targetCapacity(context.paths.boot, disk);
  await mkdir(context.paths.run, { recursive: true });
  const staging = path.join(
    context.paths.run,
    `update-boot.${process.pid}.${randomBytes(4).toString("hex")}.tmp`,
  );
  try {
    await (await open(staging, "wx", 0o600)).close();
    const hashes = hashWithSha256(request.algorithm);
    const received = await writeUpload({
      source: request.source,
      targetPath: staging,
      targetName: `the boot partition (staged in ${staging})`,
      capacity,
      algorithm: request.algorithm,
      hash: hashes.hash,
      expectedLength: request.contentLength,
      idle: request.idle,
      beforeRead: request.beforeRead,
      readBack: false,
      device: disk,
    });
    if (received.bytes === 0) throw emptyUpload("/update/boot");
    // A pending signed manifest is checked against the staged image before
    // anything reaches the boot partition.
    await request.checkImage?.({ sha256: hashes.sha256(), size: received.bytes });
    const plan = await planSlotWrite(context, staging);
    if (plan.kind === "image") {
      context.log.warn(
        `boot upload: ${plan.why}; copying the whole image over the boot partition (not power-safe)`,
      );
      return await copyWholeImage(context, staging, { ...received, algorithm: request.algorithm });
    }
    const written = await installSlotFiles(context, staging, plan.slot, plan.label, plan.live);
    return {
      target: `slot ${plan.slot}'s boot files`,
      bytes: received.bytes,
      hash: received.hash,
      notes: written.notes,
    };
  } finally {
    await rm(staging, { force: true });
  }
}

type SlotWritePlan =
  { kind: "files"; slot: Slot; label: BootLabel; live: BootConfig } | { kind: "image"; why: string };

async function planSlotWrite(context: UploadContext, staging: string): Promise<SlotWritePlan> {
  if ((context.bootWrite ?? (await readBootWrite(context.paths.perm))) === "image")
    return { kind: "image", why: `/perm/rtr7/update.json asks for "bootWrite": "image"` };
  let live: BootConfig;
  try {
    if (!(await bootConfigSector(context.paths.boot)))
      return { kind: "image", why: "the unit's syslinux.cfg does not sit in one sector" };
    live = await readBootConfig(context.paths.boot);
  } catch (error) {
    return { kind: "image", why: `the unit's boot partition cannot be read (${describeError(error)})` };
  }
  // Refuses (409) a slot that is committed or the fallback of a trial, as PUT /update/root does.
  const slot = await inactiveUploadSlot(context, "PUT /update/boot");
  let label: BootLabel | undefined;
  try {
    label = (await readBootConfig(staging)).labels[slot];
  } catch (error) {
    return {
      kind: "image",
      why: `the uploaded image has no readable syslinux.cfg (${describeError(error)})`,
    };
  }
  if (!label?.kernel) return { kind: "image", why: `the uploaded image's syslinux.cfg has no label ${slot}` };
  return { kind: "files", slot, label, live };
}

async function installSlotFiles(
  context: UploadContext,
  staging: string,
  slot: Slot,
  label: BootLabel,
  live: BootConfig,
): Promise<{ written: number; notes: string[] }> {
  const { boot } = context.paths;
  const targets = slotBootFiles(slot);
  const pairs = [{ from: label.kernel, to: targets.kernel }];
  if (label.initrd) pairs.push({ from: label.initrd, to: targets.initrd });
  let written = 0;
  let unchanged = 0;
  for (const { from, to } of pairs) {
    const bytes = await readBootFile(staging, from).catch((error: unknown) => {
      throw new Rtr7Error(
        "RTR7_ERR_UPDATE_REQUEST",
        `PUT /update/boot: the image's syslinux.cfg names /${from} for slot ${slot}, which it does not hold (${describeError(error)})`,
        {
          hint: "The boot image is incomplete: build it again with `rtr7 image build`. Nothing was written.",
        },
      );
    });
    const current = await readBootFile(boot, to).catch(() => undefined);
    if (current?.equals(bytes)) {
      unchanged += bytes.length;
      continue;
    }
    if (written === 0) {
      context.log.info({ slot }, `writing slot ${slot}'s boot files beside slot ${otherSlot(slot)}'s`);
      await writeBootFilesState(context.paths.perm, slot, context.now().toISOString());
    }
    await writeBootFile(boot, to, bytes);
    const back = await readBootFile(boot, to);
    if (!back.equals(bytes))
      throw new Rtr7Error(
        "RTR7_ERR_UPDATE_VERIFY",
        `the boot partition (${boot}): /${to} read back ${back.length} bytes that differ from the ${bytes.length} the image holds`,
      );
    written += bytes.length;
  }
  const diskId = (await readAt(context.paths.mbr, partitionTableOffset, 4)).readUInt32LE(0);
  const installed: BootLabel = {
    kernel: targets.kernel,
    ...(label.initrd ? { initrd: targets.initrd } : {}),
    append: withRootDisk(label.append, diskId, slot),
  };
  const before = live.labels[slot];
  const labelChanged =
    before?.kernel !== installed.kernel ||
    before.initrd !== installed.initrd ||
    before.append !== installed.append;
  if (labelChanged) {
    await writeBootConfig(
      boot,
      { ...live, labels: { ...live.labels, [slot]: installed } },
      { device: context.disk, warn: (message) => context.log.warn(message) },
    );
  }
  await writeBootFilesState(context.paths.perm, slot, undefined);
  const notes = [
    written === 0
      ? `slot ${slot}'s kernel and initrd were already on the boot partition: nothing written`
      : `wrote ${written} bytes of slot ${slot}'s kernel and initrd${unchanged > 0 ? ` (${unchanged} unchanged)` : ""}`,
  ];
  if (labelChanged)
    notes.push(`label ${slot} in syslinux.cfg rewritten (one sector); DEFAULT stays ${live.defaultSlot}`);
  context.log.info({ slot, written, unchanged, labelChanged }, `boot upload: ${notes.join("; ")}`);
  return { written, notes };
}

/** The whole image over the partition, then DEFAULT set back to what it named before. */
async function copyWholeImage(
  context: UploadContext,
  staging: string,
  received: { bytes: number; hash: string; algorithm: HashAlgorithm },
): Promise<UploadOutcome> {
  const committed = await committedBeforeBootUpload(context);
  const targetName = "the boot partition";
  const copied = await writeUpload({
    source: createReadStream(staging, { highWaterMark: 1024 * 1024 }),
    targetPath: context.paths.boot,
    targetName,
    algorithm: received.algorithm,
    expectedLength: received.bytes,
    device: context.disk,
  });
  if (copied.hash !== received.hash || copied.bytes !== received.bytes) {
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_VERIFY",
      `${targetName} (${context.paths.boot}): read back ${copied.bytes} bytes hashing ${copied.hash}; the upload had ${received.bytes} hashing ${received.hash}`,
    );
  }
  await context.boot.keepDefault(committed);
  return {
    target: targetName,
    bytes: copied.bytes,
    hash: copied.hash,
    notes: [`the whole image was copied; syslinux.cfg's DEFAULT kept at slot ${committed}`],
  };
}

async function committedBeforeBootUpload(context: UploadContext): Promise<Slot> {
  try {
    return await context.boot.committedSlot();
  } catch (error) {
    // No readable DEFAULT (the boot partition is damaged, which is what a new
    // boot image repairs): the committed slot is the running one, or the
    // other one while the running one is on trial.
    const running = context.boot.running();
    const committed = running.trial ? otherSlot(running.slot) : running.slot;
    context.log.warn(
      { err: error },
      `cannot read the committed slot from the boot partition; keeping slot ${committed} as the default`,
    );
    return committed;
  }
}
