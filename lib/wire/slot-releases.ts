// The signed releases a unit's root slots hold, as both sides of a unit's
// life write them: <perm>/rtr7/releases.json, per slot the release's
// version, kind, signing key and release time. The update API records a
// slot at switch or testboot (router/update-api/release-state.ts);
// recovery-init and the lab record the slot they install, so a freshly
// recovered unit knows what it runs (rollback protection compares with it)
// and a rollback may switch back to it. pending-release.json is the update
// API's manifest in flight, which a recovery discards.
import path from "node:path";

export interface SlotRelease {
  version: string;
  /** "fleet" or "host:NAME". */
  kind: string;
  /** The key that signed it; "" for a release installed unsigned (by a recovery). */
  keyId: string;
  /** Its release time (ms), from the signature (or the manifest's buildTime when unsigned). */
  signedAtMs: number;
  /** SHA-256 of manifest.json's bytes. */
  manifestSha256: string;
  /** When the slot was named (switch, testboot) or installed. */
  time: string;
}

export function slotReleasesPath(permDir: string): string {
  return path.join(permDir, "rtr7", "releases.json");
}

export function pendingReleasePath(permDir: string): string {
  return path.join(permDir, "rtr7", "pending-release.json");
}
