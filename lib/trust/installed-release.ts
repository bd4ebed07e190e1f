// What a recovery (recovery-init on a unit, `rtr7 lab unit` for a new unit
// directory) records about the release it installs into root slot a:
// releases.json names that slot's release and nothing else (a backup's
// records describe a disk that no longer exists), and the update API's
// manifest in flight, if the backup brought one, is discarded. Signed by
// one of the keys given (the unit's, or the workstation's it is about to
// trust), the record carries the signature's facts; otherwise it is an
// unsigned record with the manifest's buildTime as its release time. Either
// way a rollback may switch back to the slot, and rollback protection
// compares a new release with it.
import { createHash } from "node:crypto";
import { writeFileAtomically, removeDurably } from "../atomic-file.js";
import { parseManifest } from "../wire/manifest.js";
import { pendingReleasePath, slotReleasesPath, type SlotRelease } from "../wire/slot-releases.js";
import type { PublicKey } from "./minisign.js";
import { releaseKind, verifyManifest } from "./release-signature.js";

export function installedRelease(
  manifestBytes: Buffer,
  signature: string | undefined,
  keys: readonly PublicKey[],
  now: Date,
): SlotRelease {
  const manifestSha256 = createHash("sha256").update(manifestBytes).digest("hex");
  if (signature !== undefined && keys.length > 0)
    try {
      const verified = verifyManifest(manifestBytes, signature, keys);
      return {
        version: verified.version,
        kind: verified.kind,
        keyId: verified.keyId,
        signedAtMs: verified.signedAtMs,
        manifestSha256,
        time: now.toISOString(),
      };
    } catch {
      // Not signed by these keys: recorded as installed unsigned.
    }
  const manifest = parseManifest(JSON.parse(manifestBytes.toString("utf8")));
  const built = Date.parse(manifest.buildTime ?? "");
  return {
    version: manifest.version ?? "",
    kind: releaseKind(manifest),
    keyId: "",
    signedAtMs: Number.isSafeInteger(built) ? built : 0,
    manifestSha256,
    time: now.toISOString(),
  };
}

export async function recordInstalledRelease(
  permDir: string,
  slot: "a" | "b",
  record: SlotRelease,
): Promise<void> {
  await writeFileAtomically(slotReleasesPath(permDir), JSON.stringify({ [slot]: record }, null, 2) + "\n", {
    makeDirectory: true,
  });
  await removeDurably(pendingReleasePath(permDir));
}
