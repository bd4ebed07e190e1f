// What the update API knows about each root slot's contents, kept in
// <perm>/rtr7/slots.json so it survives reboots and power cuts: "writing"
// is recorded before an upload's first byte reaches the slot, "complete"
// (hash, size) only after the fsync, "invalid" (why) when an upload failed
// part way. switch and testboot only ever point the unit at a bootable slot:
// one whose state is neither writing nor invalid and that starts with a
// squashfs superblock whose image fits the slot (and, for an upload this API
// completed, the bytes it received).
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error, describeError } from "../../lib/errors.js";
import { isSlot, type Slot, type UnitPaths } from "../unit.js";
import { writeFileAtomically } from "../../lib/atomic-file.js";
import type { HashAlgorithm } from "./write-target.js";
import { readAt, targetCapacity } from "./write-target.js";

export type SlotState =
  | { state: "writing"; since: string }
  | { state: "complete"; algorithm: HashAlgorithm; hash: string; size: number; time: string }
  | { state: "invalid"; why: string; time: string };

export type SlotStates = Partial<Record<Slot, SlotState>>;

export function slotStatePath(permDir: string): string {
  return path.join(permDir, "rtr7", "slots.json");
}

/**
 * Each slot's kernel and initrd on the boot partition, kept in
 * <perm>/rtr7/boot-files.json: "writing" before a boot upload writes the
 * first byte of them, removed once they are written, read back and named
 * by the slot's label. A power cut in between leaves the record, and
 * switch and testboot refuse the slot until a boot upload completes.
 */
export function bootFilesStatePath(permDir: string): string {
  return path.join(permDir, "rtr7", "boot-files.json");
}

type BootFilesStates = Partial<Record<Slot, { state: "writing"; since: string }>>;

async function readBootFilesStates(permDir: string): Promise<BootFilesStates> {
  try {
    const parsed = JSON.parse(await readFile(bootFilesStatePath(permDir), "utf8")) as unknown;
    const states: BootFilesStates = {};
    if (parsed !== null && typeof parsed === "object")
      for (const [slot, value] of Object.entries(parsed))
        if (isSlot(slot) && (value as { state?: unknown } | null)?.state === "writing")
          states[slot] = value as { state: "writing"; since: string };
    return states;
  } catch {
    return {};
  }
}

/** Records (or, with undefined, clears) that `slot`'s boot files are being written. */
export async function writeBootFilesState(
  permDir: string,
  slot: Slot,
  writingSince: string | undefined,
): Promise<void> {
  const states = await readBootFilesStates(permDir);
  if (writingSince === undefined && states[slot] === undefined) return;
  if (writingSince === undefined) delete states[slot];
  else states[slot] = { state: "writing", since: writingSince };
  const file = bootFilesStatePath(permDir);
  try {
    await writeFileAtomically(file, JSON.stringify(states, null, 2) + "\n", { makeDirectory: true });
  } catch (cause) {
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_WRITE",
      `record slot ${slot}'s boot files in ${file}: ${describeError(cause)}`,
      {
        cause,
        hint: "Check that /perm is mounted read-write and has room (df -h /perm).",
      },
    );
  }
}

/** The recorded states; {} when none were recorded yet. Throws RTR7_ERR_SLOT_INVALID when the file is damaged. */
export async function readSlotStates(permDir: string): Promise<SlotStates> {
  const file = slotStatePath(permDir);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new Rtr7Error("RTR7_ERR_SLOT_INVALID", `read ${file}: ${describeError(error)}`, { cause: error });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Rtr7Error("RTR7_ERR_SLOT_INVALID", `${file} is not JSON: ${describeError(error)}`, {
      cause: error,
      hint: "Upload the root image again (PUT /update/root): that rewrites the file.",
    });
  }
  const states: SlotStates = {};
  if (parsed !== null && typeof parsed === "object") {
    for (const [slot, value] of Object.entries(parsed)) {
      if (isSlot(slot) && isSlotState(value)) states[slot] = value;
    }
  }
  return states;
}

/** Records `state` for `slot` (the other slot's record is kept), atomically. */
export async function writeSlotState(permDir: string, slot: Slot, state: SlotState): Promise<void> {
  let states: SlotStates;
  try {
    states = await readSlotStates(permDir);
  } catch {
    // A damaged file is replaced; the other slot then has no record and is
    // judged by its superblock alone.
    states = {};
  }
  states[slot] = state;
  const file = slotStatePath(permDir);
  try {
    await writeFileAtomically(file, JSON.stringify(states, null, 2) + "\n", { makeDirectory: true });
  } catch (cause) {
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_WRITE",
      `record slot ${slot} as ${state.state} in ${file}: ${describeError(cause)}`,
      {
        cause,
        hint: "Check that /perm is mounted read-write and has room (df -h /perm).",
      },
    );
  }
}

export interface SquashfsSuperblock {
  /** bytes_used: how long the image is. */
  bytesUsed: number;
}

const squashfsMagic = 0x73717368; // "hsqs" read little-endian
const superblockBytes = 96;

/** The squashfs superblock at offset 0 of `target`, or undefined when there is none. */
export async function readSquashfsSuperblock(target: string): Promise<SquashfsSuperblock | undefined> {
  const head = await readAt(target, 0, superblockBytes);
  if (head.length < superblockBytes || head.readUInt32LE(0) !== squashfsMagic) return undefined;
  return { bytesUsed: Number(head.readBigUInt64LE(40)) };
}

/**
 * Throws RTR7_ERR_SLOT_INVALID (saying why) unless `slot` may be booted:
 * its recorded state is not writing or invalid, it starts with a squashfs
 * superblock, and the image the superblock describes fits the slot and the
 * upload that filled it.
 */
export async function checkBootable(paths: UnitPaths, slot: Slot): Promise<void> {
  const target = paths.roots[slot];
  const invalid = (why: string, cause?: unknown): Rtr7Error =>
    new Rtr7Error("RTR7_ERR_SLOT_INVALID", `slot ${slot} (${target}) is not bootable: ${why}`, { cause });
  let recorded: SlotState | undefined;
  try {
    recorded = (await readSlotStates(paths.perm))[slot];
  } catch (error) {
    throw invalid(describeError(error), error);
  }
  if (recorded?.state === "writing") {
    throw invalid(`an upload to it started at ${recorded.since} and never completed`);
  }
  if (recorded?.state === "invalid") throw invalid(`${recorded.why} (at ${recorded.time})`);
  const bootFiles = (await readBootFilesStates(paths.perm))[slot];
  if (bootFiles)
    throw invalid(
      `a boot upload began writing its kernel and initrd at ${bootFiles.since} and never completed; upload the boot image again (PUT /update/boot)`,
    );
  let superblock: SquashfsSuperblock | undefined;
  let capacity: number;
  try {
    superblock = await readSquashfsSuperblock(target);
    capacity = await targetCapacity(target);
  } catch (error) {
    throw invalid(`reading it failed: ${describeError(error)}`, error);
  }
  if (!superblock) throw invalid(`it does not start with a squashfs superblock (magic "hsqs")`);
  if (superblock.bytesUsed < superblockBytes || superblock.bytesUsed > capacity) {
    throw invalid(`its squashfs superblock says ${superblock.bytesUsed} bytes; the slot holds ${capacity}`);
  }
  if (recorded?.state === "complete" && superblock.bytesUsed > recorded.size) {
    throw invalid(
      `its squashfs superblock says ${superblock.bytesUsed} bytes, but the upload that filled it had ${recorded.size}`,
    );
  }
}

function isSlotState(value: unknown): value is SlotState {
  if (value === null || typeof value !== "object") return false;
  const state = (value as { state?: unknown }).state;
  return state === "writing" || state === "complete" || state === "invalid";
}
