// The three kinds of upload of gokrazy's update protocol, apart from HTTP:
//  - root: onto the inactive root slot, never the running one, and never the
//    committed one (on trial, or after a switch, the inactive slot is what
//    the next power cycle boots); the slot is recorded "writing" before its
//    first byte, "complete" after the fsync, and on any failure after the
//    first byte "invalid" with its first 4 KiB zeroed, so no half image ever
//    looks like a squashfs;
//  - boot and bootonly: router/update-api/boot-upload.ts (the inactive
//    slot's kernel and initrd, written beside the committed slot's);
//  - mbr: at most one sector; only bytes 0..439 (boot code) are written,
//    and only when they differ from what the disk holds (one sector write,
//    which a power cut cannot tear): 440..511 hold the disk identifier and
//    the partition table, which updates never change. gokrazy's packer sends 446 bytes (boot code, its disk
//    signature, two zero bytes); the reply hashes all that was sent, because
//    that is what the client compares: the 440 bytes as read back, then the
//    rest as received.
// Every target is written through lib/disk/verified-writer.ts and read back
// past the page cache: the reply is the hash of what the target holds, and
// a read-back that differs from what was received is RTR7_ERR_UPDATE_VERIFY
// instead of a hash (a root slot is then marked invalid, as after any
// failure once its first byte was written). When a signed manifest is
// pending (release-gate.ts), each upload hands its `checkImage` the size
// and SHA-256 of what the unit holds: a root slot's bytes as read back
// (marked invalid when they are not the manifest's), the MBR's body before
// anything is written.
import { createHash } from "node:crypto";
import type { DiskDevice } from "../../lib/disk/device.js";
import { writeVerified } from "../../lib/disk/verified-writer.js";
import { Rtr7Error, describeError, isRtr7Error } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import { mbrBootCodeBytes, partitionTableOffset } from "../../lib/wire/disk-layout.js";
import type { BootControl } from "../boot/boot-control.js";
import { otherSlot, type Slot, type UnitPaths } from "../unit.js";
import { writeSlotState } from "./slot-state.js";
import {
  createUpdateHash,
  hashWithSha256,
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
  /** How PUT /update/boot reaches the partition (router/update-api/boot-upload.ts); default /perm/rtr7/update.json's. */
  bootWrite?: "files" | "image";
}

export interface UploadRequest {
  source: UploadSource;
  algorithm: HashAlgorithm;
  /** Content-Length, when the request sent one (gokrazy's client streams chunked). */
  contentLength?: number;
  idle?: IdleLimit;
  /** Called right before the body is first read (the server sends "100 Continue" then). */
  beforeRead?: () => void;
  /** Throws when what the unit holds is not what a pending signed manifest lists (release-gate.ts). */
  checkImage?: (actual: { sha256: string; size: number }) => Promise<void>;
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

/**
 * The slot PUT /update/root (and /update/boot, for the slot's kernel)
 * writes; throws 409 when that slot is the one the unit would fall back to.
 */
export async function inactiveUploadSlot(context: UploadContext, what = "PUT /update/root"): Promise<Slot> {
  const running = context.boot.running();
  const inactive = otherSlot(running.slot);
  if (running.trial) {
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_BUSY",
      `${what}: the unit runs slot ${running.slot} on trial; commit it or reboot into the committed slot before uploading: the other slot (${inactive}) is the fallback`,
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
      `${what}: slot ${inactive} is committed (syslinux.cfg's DEFAULT): the next boot runs it, so an upload must not overwrite it`,
      {
        hint: `Reboot into slot ${inactive} first (POST /reboot), or make the running slot ${running.slot} the default again (POST /update/commit), then upload.`,
      },
    );
  }
  return inactive;
}

export async function uploadRoot(context: UploadContext, request: UploadRequest): Promise<UploadOutcome> {
  const slot = await inactiveUploadSlot(context);
  const target = context.paths.roots[slot];
  const targetName = `root slot ${slot}`;
  let touched = false;
  const hashes = hashWithSha256(request.algorithm);
  try {
    const result = await writeUpload({
      source: request.source,
      targetPath: target,
      targetName,
      device: context.disk,
      algorithm: request.algorithm,
      hash: hashes.hash,
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
    await request.checkImage?.({ sha256: hashes.sha256(), size: result.bytes });
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
  await request.checkImage?.({ sha256: createHash("sha256").update(body).digest("hex"), size: body.length });
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
  context.log.info(`writing the MBR boot code (${bootCode.length} bytes, one sector)`);
  const current = await readAt(context.paths.mbr, 0, bootCode.length);
  if (current.equals(bootCode)) {
    // Nothing to write: the sector already holds these bytes.
    hash.update(current);
    hash.update(body.subarray(mbrBootCodeBytes));
    notes.push("the boot code was already on the disk: nothing written");
    return { target: "the MBR boot code", bytes: body.length, hash: hash.hex(), notes };
  }
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

export function emptyUpload(url: string): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_UPDATE_REQUEST", `PUT ${url}: the body is empty; want the image`);
}
