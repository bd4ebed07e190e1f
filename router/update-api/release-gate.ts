// Where the update API's routes meet the signed-release policy
// (signed-release.ts): reads the unit's trusted keys (lib/trust/) and its
// release records (release-state.ts), asks the policy, and records what it
// decided. The server calls it around every upload, switch, testboot and
// commit, under the update lock; trust-routes.ts calls it for the trust and
// manifest routes. A unit that trusts no key passes every gate, as a
// gokrazy unit would; a manifest sent to it anyway is recorded unverified
// (it must parse) and its uploads are compared with it all the same.
import { createHash } from "node:crypto";
import { Rtr7Error, describeError, isRtr7Error } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import { parsePublicKey, type PublicKey } from "../../lib/trust/minisign.js";
import { verifyManifest, verifyRotation, type RotationStatement } from "../../lib/trust/release-signature.js";
import { addTrustedKey, readTrustedKeys, removeTrustedKey } from "../../lib/trust/trusted-keys.js";
import { parseManifest } from "../../lib/wire/manifest.js";
import { otherSlot, type Slot } from "../unit.js";
import {
  clearPendingRelease,
  readPendingRelease,
  readSlotReleases,
  writePendingRelease,
  writeSlotRelease,
  type PendingRelease,
  type SignedImage,
  type SlotRelease,
} from "./release-state.js";
import { checkReleaseFits, checkUploadMatches, decideBoot, decideCommit } from "./signed-release.js";
import { inactiveUploadSlot, type UploadContext } from "./uploads.js";

/** What an upload gives the gate once it knows what the unit holds. */
export type ImageCheck = (actual: { sha256: string; size: number }) => Promise<void>;

export interface ManifestRequest {
  manifest: string;
  signature: string;
  allowDowngrade: boolean;
}

export interface TrustFacts {
  keys: string[];
  running: { slot: Slot; version?: string; signedAtMs?: number; keyId?: string };
  pending?: { slot: Slot; version: string; verified: boolean; keyId?: string; matched: SignedImage[] };
}

export class ReleaseGate {
  private readonly log: Logger;

  constructor(
    private readonly context: UploadContext,
    /** The unit's hostname: a "host:NAME" release must name it. */
    private readonly hostname: string | undefined,
  ) {
    this.log = context.log.child({ part: "signed-release" });
  }

  private get perm(): string {
    return this.context.paths.perm;
  }

  async trustedKeys(): Promise<PublicKey[]> {
    const { keys, skipped } = await readTrustedKeys(this.perm);
    for (const why of skipped) this.log.warn(`not a trusted key, skipped: ${why}`);
    return keys;
  }

  async facts(versionRunning: string | undefined): Promise<TrustFacts> {
    const keys = await this.trustedKeys();
    const slot = this.context.boot.running().slot;
    const record = (await readSlotReleases(this.perm))[slot];
    const pending = await readPendingRelease(this.perm);
    return {
      keys: keys.map((key) => key.keyId),
      running: record
        ? { slot, version: record.version, signedAtMs: record.signedAtMs, keyId: record.keyId }
        : { slot, ...(versionRunning === undefined ? {} : { version: versionRunning }) },
      ...(pending
        ? {
            pending: {
              slot: pending.slot,
              version: pending.version,
              verified: pending.verified,
              ...(pending.keyId === undefined ? {} : { keyId: pending.keyId }),
              matched: Object.keys(pending.matched) as SignedImage[],
            },
          }
        : {}),
    };
  }

  /**
   * PUT /update/trust: a key rotation statement, checked against the keys
   * trusted now. The new key is written first, then the key it replaces
   * removed, so a power cut in between leaves both trusted, never none.
   */
  async rotate(
    statement: RotationStatement,
  ): Promise<{ changed: boolean; added?: string; removed?: string }> {
    const where = "PUT /update/trust: the key rotation statement";
    let newKeyId: string;
    try {
      newKeyId = parsePublicKey(statement.publicKey, `${where}'s new key`).keyId;
    } catch (error) {
      throw new Rtr7Error("RTR7_ERR_SIGNATURE", describeError(error), { cause: error });
    }
    const keys = await this.trustedKeys();
    if (keys.some((key) => key.keyId === newKeyId)) return { changed: false };
    const rotation = verifyRotation(statement, keys, where);
    await addTrustedKey(this.perm, rotation.newKey);
    await removeTrustedKey(this.perm, rotation.replaces);
    this.log.info(
      `key ${rotation.newKey.keyId} replaces key ${rotation.replaces} (rotation statement verified)`,
    );
    return { changed: true, added: rotation.newKey.keyId, removed: rotation.replaces };
  }

  /** PUT /update/manifest: verified (when the unit trusts a key) and recorded for the inactive slot. */
  async acceptManifest(request: ManifestRequest): Promise<PendingRelease> {
    const slot = await inactiveUploadSlot(this.context, "PUT /update/manifest");
    const bytes = Buffer.from(request.manifest, "utf8");
    const manifestSha256 = createHash("sha256").update(bytes).digest("hex");
    const keys = await this.trustedKeys();
    const receivedAt = this.context.now().toISOString();
    let pending: PendingRelease;
    if (keys.length === 0) {
      let parsed;
      try {
        parsed = parseManifest(JSON.parse(request.manifest));
      } catch (error) {
        if (isRtr7Error(error)) throw error;
        throw new Rtr7Error(
          "RTR7_ERR_MANIFEST",
          `PUT /update/manifest: manifest.json is not JSON (${describeError(error)})`,
        );
      }
      pending = {
        slot,
        version: parsed.version ?? "",
        kind: parsed.anyUnit === true || parsed.hostname === undefined ? "fleet" : `host:${parsed.hostname}`,
        verified: false,
        manifestSha256,
        images: parsed.images,
        matched: {},
        receivedAt,
      };
    } else {
      const release = verifyManifest(bytes, request.signature, keys, "PUT /update/manifest: manifest.json");
      const running = this.context.boot.running().slot;
      checkReleaseFits(
        release,
        { hostname: this.hostname, running, runningRelease: (await readSlotReleases(this.perm))[running] },
        request.allowDowngrade,
      );
      pending = {
        slot,
        version: release.version,
        kind: release.kind,
        verified: true,
        keyId: release.keyId,
        signedAtMs: release.signedAtMs,
        manifestSha256,
        images: release.manifest.images,
        matched: {},
        receivedAt,
      };
    }
    await writePendingRelease(this.perm, pending);
    return pending;
  }

  /**
   * Before an upload: the slot it writes no longer holds its recorded
   * release, and an earlier match of this image is forgotten. Returns the
   * check the upload must pass once it knows what the unit holds, when a
   * manifest is pending for the slot.
   */
  async beforeUpload(image: SignedImage, url: string): Promise<ImageCheck | undefined> {
    if (image !== "mbr") {
      let slot: Slot | undefined;
      try {
        slot = await inactiveUploadSlot(this.context, url);
      } catch {
        // The upload refuses itself (409) with the same reason.
      }
      if (slot !== undefined) await writeSlotRelease(this.perm, slot, undefined);
    }
    const pending = await readPendingRelease(this.perm);
    if (pending === undefined) return undefined;
    if (pending.slot !== otherSlot(this.context.boot.running().slot)) {
      // The unit rebooted since: the manifest was for the slot it now runs.
      await clearPendingRelease(this.perm);
      return undefined;
    }
    if (pending.matched[image] !== undefined) {
      delete pending.matched[image];
      await writePendingRelease(this.perm, pending);
    }
    return async (actual) => {
      checkUploadMatches(pending, image, actual, url);
      pending.matched[image] = { ...actual, time: this.context.now().toISOString() };
      await writePendingRelease(this.perm, pending);
    };
  }

  /** Throws unless switch or testboot may name `slot`; records the release it boots. */
  async beforeBoot(action: "switch" | "testboot", slot: Slot): Promise<void> {
    const keys = await this.trustedKeys();
    const pending = await readPendingRelease(this.perm);
    const slotRelease = (await readSlotReleases(this.perm))[slot];
    const verdict = decideBoot({
      action,
      slot,
      trustedKeyIds: keys.map((key) => key.keyId),
      pending,
      slotRelease,
    });
    if (!verdict.allow) throw verdict.error;
    if (verdict.record) {
      const record: SlotRelease = { ...verdict.record, time: this.context.now().toISOString() };
      await writeSlotRelease(this.perm, slot, record);
      this.log.info(`slot ${slot} holds release ${record.version}, signed by key ${record.keyId}`);
    }
    if (pending?.slot === slot) await clearPendingRelease(this.perm);
  }

  /** Throws unless POST /update/commit may make the running slot the default. */
  async beforeCommit(): Promise<void> {
    const keys = await this.trustedKeys();
    if (keys.length === 0) return;
    const running = this.context.boot.running().slot;
    const committed = await this.context.boot.committedSlot().catch(() => undefined);
    const refusal = decideCommit({
      running,
      committed,
      trustedKeyIds: keys.map((key) => key.keyId),
      runningRelease: (await readSlotReleases(this.perm))[running],
    });
    if (refusal) throw refusal;
  }
}
