// The update API's policy for signed releases, as pure functions of what
// the unit trusts and has recorded (release-state.ts): no I/O, so each
// decision is tested on its own (test/unit/signed-release.test.ts).
//  - A unit that trusts no key behaves as gokrazy's units do: every check
//    here allows, and unsigned clients work as before.
//  - A unit that trusts a key takes a release only through a manifest
//    signed by one of its keys, for its kind (the fleet, or this hostname),
//    not signed before the release its running slot holds (rollback
//    protection) unless the client asked for a downgrade; every root, boot
//    and MBR upload after it must be what the manifest lists (size and
//    SHA-256 of what the unit holds); switch and testboot need that
//    manifest for the slot they name, with root and boot matched. A slot
//    that still holds a release it was pointed at before (nothing uploaded
//    to it since) may be switched back to without a manifest: that is how a
//    rollback returns to the old slot, and it needs no flag.
//  - commit of a slot other than the committed one needs that slot's
//    release record: a trusting unit never makes an unverified slot its
//    default.
// Every refusal is RTR7_ERR_SIGNATURE (403), naming the image or the
// signature that failed, or RTR7_ERR_DOWNGRADE (409).
import { Rtr7Error } from "../../lib/errors.js";
import { imageFiles } from "../../lib/wire/images.js";
import type { ManifestImage } from "../../lib/wire/manifest.js";
import type { Slot } from "../unit.js";
import type { PendingRelease, SignedImage, SlotRelease } from "./release-state.js";

export interface ReleaseFacts {
  version: string;
  kind: string;
  keyId: string;
  signedAtMs: number;
}

/** Throws unless a verified release's kind fits this unit and it is not older than what the unit runs. */
export function checkReleaseFits(
  release: ReleaseFacts,
  unit: { hostname: string | undefined; running: Slot; runningRelease: SlotRelease | undefined },
  allowDowngrade: boolean,
): void {
  const what = `PUT /update/manifest: release ${release.version} (key ${release.keyId})`;
  if (release.kind !== "fleet" && release.kind !== `host:${unit.hostname ?? ""}`)
    throw new Rtr7Error(
      "RTR7_ERR_SIGNATURE",
      `${what} is signed for ${release.kind}, want "fleet" or "host:${unit.hostname ?? "?"}" (this unit)`,
      {
        hint: `Build the release for this unit (rtr7 image build --hostname ${unit.hostname ?? "NAME"}) or as a fleet release.`,
      },
    );
  const running = unit.runningRelease;
  if (running !== undefined && release.signedAtMs < running.signedAtMs && !allowDowngrade)
    throw new Rtr7Error(
      "RTR7_ERR_DOWNGRADE",
      `${what} was signed at ${isoTime(release.signedAtMs)}, before release ${running.version} that slot ${unit.running} runs (signed at ${isoTime(running.signedAtMs)}): refused as a downgrade`,
    );
}

/** The manifest's entry for an upload, or undefined. */
export function manifestEntry(
  images: readonly ManifestImage[],
  image: SignedImage,
): ManifestImage | undefined {
  return images.find((entry) => entry.name === imageFiles[image]);
}

/** Throws RTR7_ERR_SIGNATURE unless what the unit holds is the manifest's image. */
export function checkUploadMatches(
  pending: PendingRelease,
  image: SignedImage,
  actual: { sha256: string; size: number },
  url: string,
): void {
  const name = imageFiles[image];
  const signed = pending.verified
    ? `signed manifest of release ${pending.version}`
    : `manifest of release ${pending.version} (unsigned)`;
  const entry = manifestEntry(pending.images, image);
  if (entry === undefined)
    throw new Rtr7Error("RTR7_ERR_SIGNATURE", `${url}: the ${signed} lists no ${name}; refused`);
  if (entry.sha256 !== actual.sha256 || entry.size !== actual.size)
    throw new Rtr7Error(
      "RTR7_ERR_SIGNATURE",
      `${url}: ${name} does not match the ${signed}: got ${actual.size} bytes, sha256 ${actual.sha256}; the manifest says ${entry.size} bytes, sha256 ${entry.sha256}`,
    );
}

export type BootVerdict =
  /** Allowed; record this as the slot's release. */
  { allow: true; record?: Omit<SlotRelease, "time"> } | { allow: false; error: Rtr7Error };

/** Whether switch or testboot may point the unit at `slot`. */
export function decideBoot(input: {
  action: "switch" | "testboot";
  slot: Slot;
  trustedKeyIds: readonly string[];
  pending: PendingRelease | undefined;
  slotRelease: SlotRelease | undefined;
}): BootVerdict {
  const { action, slot, pending } = input;
  if (input.trustedKeyIds.length === 0) return { allow: true };
  const refuse = (why: string): BootVerdict => ({
    allow: false,
    error: new Rtr7Error(
      "RTR7_ERR_SIGNATURE",
      `POST /update/${action}: slot ${slot} refused, nothing switched: ${why}; this unit trusts key${input.trustedKeyIds.length > 1 ? "s" : ""} ${input.trustedKeyIds.join(", ")} and boots only releases they signed`,
      {
        hint: "Send the release's signed manifest (PUT /update/manifest, as rtr7 safe-update does when the release has manifest.json.minisig), then its root and boot images unchanged.",
      },
    ),
  });
  if (pending?.verified === true && pending.slot === slot) {
    const missing = (["root", "boot"] as const).filter((image) => pending.matched[image] === undefined);
    if (missing.length === 0)
      return {
        allow: true,
        record: {
          version: pending.version,
          kind: pending.kind,
          keyId: pending.keyId ?? "",
          signedAtMs: pending.signedAtMs ?? 0,
          manifestSha256: pending.manifestSha256,
        },
      };
    if (input.slotRelease === undefined)
      return refuse(
        `${missing.map((image) => imageFiles[image]).join(" and ")} ${missing.length > 1 ? "were" : "was"} not uploaded (and matched) since the signed manifest of release ${pending.version}`,
      );
  }
  if (input.slotRelease !== undefined) return { allow: true };
  if (pending?.verified === true)
    return refuse(
      `the signed manifest (release ${pending.version}) is for slot ${pending.slot}, not ${slot}`,
    );
  return refuse(`no signed manifest was sent for it (PUT /update/manifest): its images are unsigned`);
}

/** Whether POST /update/commit may make the running slot the default. */
export function decideCommit(input: {
  running: Slot;
  committed: Slot | undefined;
  trustedKeyIds: readonly string[];
  runningRelease: SlotRelease | undefined;
}): Rtr7Error | undefined {
  if (input.trustedKeyIds.length === 0 || input.committed === input.running) return undefined;
  if (input.runningRelease !== undefined) return undefined;
  return new Rtr7Error(
    "RTR7_ERR_SIGNATURE",
    `POST /update/commit: slot ${input.running} holds no verified release (no signed manifest named it), and this unit trusts key${input.trustedKeyIds.length > 1 ? "s" : ""} ${input.trustedKeyIds.join(", ")}: refused, the committed slot stays the default`,
    { hint: "Reboot into the committed slot (POST /reboot), then update with a signed release." },
  );
}

function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}
