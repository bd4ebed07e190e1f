// The three kinds of upload of gokrazy's update protocol, apart from HTTP:
//  - root: onto the inactive root slot, never the running one, and never the
//    committed one (on trial, or after a switch, the inactive slot is what
//    the next power cycle boots); the slot is recorded "writing" before its
//    first byte, "complete" after the fsync, and on any failure after the
//    first byte "invalid" with its first 4 KiB zeroed, so no half image ever
//    looks like a squashfs;
//  - boot: staged in a temp file under paths.run first, so an upload that
//    ends early never touches the boot partition; then copied onto it
//    (hashed again on the way), and syslinux.cfg's DEFAULT set back to the
//    slot it named before, so a new boot image never changes which slot boots;
//  - mbr: at most one sector; only bytes 0..439 (boot code) are written:
//    440..511 hold the disk identifier and the partition table, which updates
//    never change. gokrazy's packer sends 446 bytes (boot code, its disk
//    signature, two zero bytes); the reply is the hash of all that was sent,
//    because that is what the client compares.
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, rm } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error, describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import type { BootControl } from "../boot/boot-control.js";
import { otherSlot, type Slot, type UnitPaths } from "../unit.js";
import { HttpRtr7Error } from "./http-errors.js";
import { writeSlotState } from "./slot-state.js";
import {
  createUpdateHash,
  readAt,
  readSmallBody,
  targetCapacity,
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
  /** The reply: lowercase hex of the body as received. */
  hash: string;
  /** Things the uploader should know (logged, and passed on in the event). */
  notes: string[];
}

export const mbrBootCodeBytes = 440;
export const mbrMaxUploadBytes = 512;
/** Zeroed at the start of a slot whose upload failed: more than a squashfs superblock (96 bytes). */
const invalidatedHeadBytes = 4096;

/** The slot PUT /update/root writes; throws 409 when that slot is the one the unit would fall back to. */
export async function rootUploadSlot(context: UploadContext): Promise<Slot> {
  const running = context.boot.running();
  const inactive = otherSlot(running.slot);
  if (running.trial) {
    throw new HttpRtr7Error(
      409,
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
    throw new HttpRtr7Error(
      409,
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
  const capacity = await targetCapacity(target);
  let touched = false;
  try {
    const result = await writeUpload({
      source: request.source,
      targetPath: target,
      targetName,
      capacity,
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
    if (touched) await invalidateSlot(context, slot, describeError(error));
    throw error;
  }
}

async function invalidateSlot(context: UploadContext, slot: Slot, why: string): Promise<void> {
  const target = context.paths.roots[slot];
  try {
    await writeInPlace(target, 0, Buffer.alloc(invalidatedHeadBytes), `the start of root slot ${slot}`);
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
  const capacity = await targetCapacity(context.paths.boot);
  await mkdir(context.paths.run, { recursive: true });
  const staging = path.join(
    context.paths.run,
    `update-boot.${process.pid}.${randomBytes(4).toString("hex")}.tmp`,
  );
  try {
    await (await open(staging, "wx", 0o600)).close();
    const received = await writeUpload({
      source: request.source,
      targetPath: staging,
      targetName,
      capacity,
      algorithm: request.algorithm,
      expectedLength: request.contentLength,
      idle: request.idle,
      beforeRead: request.beforeRead,
    });
    if (received.bytes === 0) throw emptyUpload("/update/boot");
    const copied = await writeUpload({
      source: createReadStream(staging),
      targetPath: context.paths.boot,
      targetName,
      capacity,
      algorithm: request.algorithm,
      expectedLength: received.bytes,
    });
    if (copied.hash !== received.hash || copied.bytes !== received.bytes) {
      throw new Rtr7Error(
        "RTR7_ERR_UPDATE_WRITE",
        `copying the staged boot image onto ${context.paths.boot} wrote ${copied.bytes} bytes hashing ${copied.hash}; the upload had ${received.bytes} hashing ${received.hash}`,
      );
    }
    await context.boot.keepDefault(committed);
    return {
      target: targetName,
      bytes: received.bytes,
      hash: received.hash,
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
  const capacity = await targetCapacity(context.paths.mbr);
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
    const sentDiskId = body.subarray(440, 444);
    const diskId = await readAt(context.paths.mbr, 440, 4);
    if (sentDiskId.length === 4 && !sentDiskId.equals(diskId)) {
      notes.push(
        `the upload's disk identifier ${sentDiskId.readUInt32LE(0).toString(16).padStart(8, "0")} differs from the disk's ${diskId.readUInt32LE(0).toString(16).padStart(8, "0")}: an image built for another hostname will not find its root=PARTUUID`,
      );
    }
  }
  await writeInPlace(context.paths.mbr, 0, bootCode, "the MBR boot code");
  const hash = createUpdateHash(request.algorithm);
  hash.update(body);
  return { target: "the MBR boot code", bytes: body.length, hash: hash.hex(), notes };
}

function emptyUpload(url: string): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_UPDATE_REQUEST", `PUT ${url}: the body is empty; want the image`);
}
