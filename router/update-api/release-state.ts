// What the update API remembers about signed releases, on /perm so it
// survives reboots and power cuts, each file written atomically:
//  - <perm>/rtr7/pending-release.json: the manifest accepted by
//    PUT /update/manifest for the inactive slot (its images, who signed it
//    and when), and which uploads since then matched it. switch and
//    testboot consume it; a root or boot upload that does not match it is
//    refused.
//  - <perm>/rtr7/releases.json: per root slot, the release it holds, once a
//    switch or testboot pointed the unit at it: version, key id, signing
//    time. The running slot's record is what rollback protection compares a
//    new release with; an upload to a slot removes that slot's record
//    (the slot no longer holds that release).
// A file that is missing or damaged reads as "nothing recorded": the unit
// then refuses what needs a record (a boot action, a commit), never allows.
import { readFile } from "node:fs/promises";
import { removeDurably, writeFileAtomically } from "../../lib/atomic-file.js";
import { Rtr7Error, describeError } from "../../lib/errors.js";
import type { ManifestImage } from "../../lib/wire/manifest.js";
import { pendingReleasePath, slotReleasesPath, type SlotRelease } from "../../lib/wire/slot-releases.js";

export { pendingReleasePath, slotReleasesPath, type SlotRelease };
import { isSlot, type Slot } from "../unit.js";

/** The images an upload is compared with, by what the upload fills. */
export type SignedImage = "root" | "boot" | "mbr";

export interface ImageMatch {
  sha256: string;
  size: number;
  time: string;
}

export interface PendingRelease {
  /** The slot the release is for: the inactive one when the manifest came. */
  slot: Slot;
  version: string;
  /** "fleet" or "host:NAME". */
  kind: string;
  /** false: the unit trusts no key, so the manifest was recorded without a signature check. */
  verified: boolean;
  keyId?: string;
  signedAtMs?: number;
  /** SHA-256 of manifest.json's bytes. */
  manifestSha256: string;
  images: ManifestImage[];
  /** Uploads since the manifest that matched it. */
  matched: Partial<Record<SignedImage, ImageMatch>>;
  receivedAt: string;
}

export type SlotReleases = Partial<Record<Slot, SlotRelease>>;

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as unknown;
  } catch {
    return undefined;
  }
}

async function writeJson(file: string, value: unknown, what: string): Promise<void> {
  try {
    await writeFileAtomically(file, JSON.stringify(value, null, 2) + "\n", { makeDirectory: true });
  } catch (cause) {
    throw new Rtr7Error("RTR7_ERR_UPDATE_WRITE", `record ${what} in ${file}: ${describeError(cause)}`, {
      cause,
      hint: "Check that /perm is mounted read-write and has room (df -h /perm).",
    });
  }
}

export async function readPendingRelease(permDir: string): Promise<PendingRelease | undefined> {
  const value = (await readJson(pendingReleasePath(permDir))) as Partial<PendingRelease> | undefined;
  if (
    value === undefined ||
    value === null ||
    !isSlot(value.slot) ||
    typeof value.version !== "string" ||
    typeof value.manifestSha256 !== "string" ||
    !Array.isArray(value.images) ||
    typeof value.matched !== "object" ||
    value.matched === null
  )
    return undefined;
  return value as PendingRelease;
}

export async function writePendingRelease(permDir: string, pending: PendingRelease): Promise<void> {
  await writeJson(pendingReleasePath(permDir), pending, `the pending release ${pending.version}`);
}

export async function clearPendingRelease(permDir: string): Promise<void> {
  await removeDurably(pendingReleasePath(permDir));
}

export async function readSlotReleases(permDir: string): Promise<SlotReleases> {
  const value = await readJson(slotReleasesPath(permDir));
  const releases: SlotReleases = {};
  if (value !== null && typeof value === "object")
    for (const [slot, record] of Object.entries(value))
      if (isSlot(slot) && isSlotRelease(record)) releases[slot] = record;
  return releases;
}

/** Records (or, with undefined, removes) the release `slot` holds; the other slot's record is kept. */
export async function writeSlotRelease(
  permDir: string,
  slot: Slot,
  release: SlotRelease | undefined,
): Promise<void> {
  const releases = await readSlotReleases(permDir);
  if (release === undefined && releases[slot] === undefined) return;
  if (release === undefined) delete releases[slot];
  else releases[slot] = release;
  await writeJson(slotReleasesPath(permDir), releases, `slot ${slot}'s release`);
}

function isSlotRelease(value: unknown): value is SlotRelease {
  const record = value as Partial<SlotRelease> | null;
  return (
    record !== null &&
    typeof record === "object" &&
    typeof record.version === "string" &&
    typeof record.keyId === "string" &&
    typeof record.signedAtMs === "number" &&
    Number.isSafeInteger(record.signedAtMs)
  );
}
