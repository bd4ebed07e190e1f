// The three kinds of upload of gokrazy's update protocol, apart from HTTP:
//  - root: onto the inactive root slot, never the running one, and never the
//    committed one (on trial, or after a switch, the inactive slot is what
//    the next power cycle boots); the slot is recorded "writing" before its
//    first byte, "complete" after the fsync, and on any failure after the
//    first byte "invalid" with its first 4 KiB zeroed, so no half image ever
//    looks like a squashfs;
//  - boot: staged in a temp file under paths.run first, so an upload that
//    ends early never touches the boot partition; then copied onto it, and
//    syslinux.cfg's DEFAULT set back to the slot it named before, so a new
//    boot image never changes which slot boots;
//  - mbr: at most one sector; only bytes 0..439 (boot code) are written:
//    440..511 hold the disk identifier and the partition table, which updates
//    never change. gokrazy's packer sends 446 bytes (boot code, its disk
//    signature, two zero bytes); the reply hashes all that was sent, because
//    that is what the client compares: the 440 bytes as read back, then the
//    rest as received.
// Every target is written through lib/disk/verified-writer.ts and read back
// past the page cache: the reply is the hash of what the target holds, and
// a read-back that differs from what was received is RTR7_ERR_UPDATE_VERIFY
// instead of a hash (a root slot is then marked invalid, as after any
// failure once its first byte was written).
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, rm } from "node:fs/promises";
import path from "node:path";
import { fsDisk, type DiskDevice } from "../../lib/disk/device.js";
import { writeVerified } from "../../lib/disk/verified-writer.js";
import { Rtr7Error, describeError, isRtr7Error } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import { mbrBootCodeBytes, partitionTableOffset } from "../../lib/wire/disk-layout.js";
import type { BootControl } from "../boot/boot-control.js";
import { otherSlot, type Slot, type UnitPaths } from "../unit.js";
import { writeSlotState } from "./slot-state.js";
import {
  createUpdateHash,
  readAt,
  readSmallBody,
  targetCapacity,
  updateWriteErrors,
  writeInPlace,
  writeUpload,
  type HashAlgorithm,
  type IdleLimit,
  type UploadSource,
} from "./write-target.js";

export interface UploadContext {
  paths: UnitPaths;
  boot: BootControl;
  log: Logger;
  now: () => Date;
  /** The disk the targets are on (tests inject one that flips a byte); default node:fs. */
  disk?: DiskDevice;
}

export interface UploadRequest {
  source: UploadSource;
  algorithm: HashAlgorithm;
  /** Content-Length, when the request sent one (gokrazy's client streams chunked). */
  contentLength?: number;
  idle?: IdleLimit;
  /** Called right before the body is first read (the server sends "100 Continue" then). */
  beforeRead?: () => void;
}

export interface UploadOutcome {
  /** What was written: "root slot b", "the boot partition", "the MBR boot code". */
  target: string;
  bytes: number;
  /** The reply: lowercase hex of the body, as read back from the target. */
  hash: string;
  /** Things the uploader should know (logged, and passed on in the event). */
  notes: string[];
}

export { mbrBootCodeBytes };
export const mbrMaxUploadBytes = 512;
/** Zeroed at the start of a slot whose upload failed: more than a squashfs superblock (96 bytes). */
const invalidatedHeadBytes = 4096;

/** The slot PUT /update/root writes; throws 409 when that slot is the one the unit would fall back to. */
export async function rootUploadSlot(context: UploadContext): Promise<Slot> {
  const running = context.boot.running();
  const inactive = otherSlot(running.slot);
  if (running.trial) {
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_BUSY",
      `PUT /update/root: the unit runs slot ${running.slot} on trial; commit it or reboot into the committed slot before uploading: the other slot (${inactive}) is the fallback`,
      {
        hint: `POST /update/commit keeps slot ${running.slot}; POST /reboot returns to slot ${inactive}. Then upload again.`,
      },
    );
  }
  let committed: Slot | undefined;
  try {
    committed = await context.boot.committedSlot();
  } catch (error) {
    // A damaged boot configuration is what a new image repairs: go on.
    context.log.warn({ err: error }, "cannot read the committed slot; uploading to the inactive slot anyway");
  }
  if (committed === inactive) {
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_BUSY",
      `PUT /update/root: slot ${inactive} is committed (syslinux.cfg's DEFAULT): the next boot runs it, so an upload must not overwrite it`,
      {
        hint: `Reboot into slot ${inactive} first (POST /reboot), or make the running slot ${running.slot} the default again (POST /update/commit), then upload.`,
      },
    );
  }
  return inactive;
}

export async function uploadRoot(context: UploadContext, request: UploadRequest): Promise<UploadOutcome> {
  const slot = await rootUploadSlot(context);
  const target = context.paths.roots[slot];
  const targetName = `root slot ${slot}`;
  let touched = false;
  try {
    const result = await writeUpload({
      source: request.source,
      targetPath: target,
      targetName,
      device: context.disk,
      algorithm: request.algorithm,
      expectedLength: request.contentLength,
      idle: request.idle,
      beforeRead: request.beforeRead,
      beforeFirstWrite: async () => {
        await writeSlotState(context.paths.perm, slot, {
          state: "writing",
          since: context.now().toISOString(),
        });
        touched = true;
      },
    });
    if (result.bytes === 0) throw emptyUpload("/update/root");
    await writeSlotState(context.paths.perm, slot, {
      state: "complete",
      algorithm: request.algorithm,
      hash: result.hash,
      size: result.bytes,
      time: context.now().toISOString(),
    });
    return { target: targetName, bytes: result.bytes, hash: result.hash, notes: [] };
  } catch (error) {
    // Bytes reached the slot: what is there is half an image. None did, but
    // the body broke off (a stalled or cut upload): the slot still holds
    // what it held, yet the client meant to replace it, so it is not offered
    // to switch or testboot either until a whole upload.
    if (touched) await invalidateSlot(context, slot, describeError(error));
    else if (isRtr7Error(error, "RTR7_ERR_UPDATE_TRUNCATED"))
      await invalidateSlot(context, slot, describeError(error), { zeroHead: false });
    throw error;
  }
}

async function invalidateSlot(
  context: UploadContext,
  slot: Slot,
  why: string,
  options: { zeroHead: boolean } = { zeroHead: true },
): Promise<void> {
  const target = context.paths.roots[slot];
  if (options.zeroHead)
    try {
      await writeInPlace(
        target,
        0,
        Buffer.alloc(invalidatedHeadBytes),
        `the start of root slot ${slot}`,
        context.disk,
      );
    } catch (error) {
      context.log.error({ err: error, slot }, `could not zero the start of slot ${slot}`);
    }
  try {
    await writeSlotState(context.paths.perm, slot, {
      state: "invalid",
      why: `upload failed: ${why}`,
      time: context.now().toISOString(),
    });
  } catch (error) {
    // "writing" stays recorded, which refuses switch and testboot just the same.
    context.log.error({ err: error, slot }, `could not record slot ${slot} as invalid`);
  }
}

/** PUT /update/boot and /update/bootonly: both keep the DEFAULT the boot partition named before. */
export async function uploadBoot(context: UploadContext, request: UploadRequest): Promise<UploadOutcome> {
  const committed = await committedBeforeBootUpload(context);
  const targetName = "the boot partition";
  const disk = context.disk ?? fsDisk();
  const capacity = await targetCapacity(context.paths.boot, disk);
  await mkdir(context.paths.run, { recursive: true });
  const staging = path.join(
    context.paths.run,
    `update-boot.${process.pid}.${randomBytes(4).toString("hex")}.tmp`,
  );
  try {
    await (await open(staging, "wx", 0o600)).close();
    // The staging file is read back only through the copy below, which
    // compares what the boot partition holds with what was received.
    const received = await writeUpload({
      source: request.source,
      targetPath: staging,
      targetName: `${targetName} (staged in ${staging})`,
      capacity,
      algorithm: request.algorithm,
      expectedLength: request.contentLength,
      idle: request.idle,
      beforeRead: request.beforeRead,
      readBack: false,
      device: disk,
    });
    if (received.bytes === 0) throw emptyUpload("/update/boot");
    const copied = await writeUpload({
      source: createReadStream(staging, { highWaterMark: 1024 * 1024 }),
      targetPath: context.paths.boot,
      targetName,
      algorithm: request.algorithm,
      expectedLength: received.bytes,
      device: disk,
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
      notes: [`syslinux.cfg's DEFAULT kept at slot ${committed}`],
    };
  } finally {
    await rm(staging, { force: true });
  }
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

export async function uploadMbr(context: UploadContext, request: UploadRequest): Promise<UploadOutcome> {
  const body = await readSmallBody(request.source, {
    maxBytes: mbrMaxUploadBytes,
    what: "PUT /update/mbr",
    limitNote: `one sector; only bytes 0..${mbrBootCodeBytes - 1}, the boot code, are written: ${mbrBootCodeBytes}..511 hold the disk identifier and the partition table, which updates never write`,
    expectedLength: request.contentLength,
    idle: request.idle,
    beforeRead: request.beforeRead,
  });
  if (body.length === 0) throw emptyUpload("/update/mbr");
  const bootCode = body.subarray(0, mbrBootCodeBytes);
  const capacity = await targetCapacity(context.paths.mbr, context.disk);
  if (capacity < mbrMaxUploadBytes) {
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_WRITE",
      `${context.paths.mbr} holds ${capacity} bytes: not a disk (want at least one 512-byte sector)`,
    );
  }
  const notes: string[] = [];
  if (body.length > mbrBootCodeBytes) {
    notes.push(
      `wrote bytes 0..${mbrBootCodeBytes - 1} of ${body.length}; the rest (disk identifier, partition table) was left as it is`,
    );
    const sentDiskId = body.subarray(partitionTableOffset, partitionTableOffset + 4);
    const diskId = await readAt(context.paths.mbr, partitionTableOffset, 4);
    if (sentDiskId.length === 4 && !sentDiskId.equals(diskId)) {
      notes.push(
        `the upload's disk identifier ${sentDiskId.readUInt32LE(0).toString(16).padStart(8, "0")} differs from the disk's ${diskId.readUInt32LE(0).toString(16).padStart(8, "0")}: an image built for another hostname will not find its root=PARTUUID`,
      );
    }
  }
  const hash = createUpdateHash(request.algorithm);
  await writeVerified({
    path: context.paths.mbr,
    name: "the MBR boot code",
    source: [bootCode],
    capacity: mbrBootCodeBytes,
    expectedBytes: bootCode.length,
    algorithm: request.algorithm,
    hash,
    device: context.disk,
    errors: updateWriteErrors,
  });
  hash.update(body.subarray(mbrBootCodeBytes));
  return { target: "the MBR boot code", bytes: body.length, hash: hash.hex(), notes };
}

function emptyUpload(url: string): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_UPDATE_REQUEST", `PUT ${url}: the body is empty; want the image`);
}
