// The update API's signed-release policy (router/update-api/signed-release.ts)
// as pure decisions: which releases fit a unit, rollback protection, an
// upload against its manifest, and when switch, testboot and commit may go
// ahead, given the trusted keys and what the unit has recorded.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isRtr7Error } from "../../lib/errors.js";
import type { PendingRelease, SlotRelease } from "../../router/update-api/release-state.js";
import {
  checkReleaseFits,
  checkUploadMatches,
  decideBoot,
  decideCommit,
} from "../../router/update-api/signed-release.js";

const rootSha = "a".repeat(64);
const bootSha = "b".repeat(64);

function pending(overrides: Partial<PendingRelease> = {}): PendingRelease {
  return {
    slot: "b",
    version: "v2",
    kind: "fleet",
    verified: true,
    keyId: "K",
    signedAtMs: 2000,
    manifestSha256: "c".repeat(64),
    images: [
      { name: "root.img", size: 10, sha256: rootSha },
      { name: "boot.img", size: 20, sha256: bootSha },
    ],
    matched: {},
    receivedAt: "2026-01-01T00:00:00.000Z",
    ...overrides,
  };
}

const record = (signedAtMs: number): SlotRelease => ({
  version: "v1",
  kind: "fleet",
  keyId: "K",
  signedAtMs,
  manifestSha256: "d".repeat(64),
  time: "2026-01-01T00:00:00.000Z",
});

const match = { sha256: rootSha, size: 10, time: "t" };

test("a release fits a unit when it is the fleet's or names the unit's host, and is not older than what runs", () => {
  const release = { version: "v2", kind: "fleet", keyId: "K", signedAtMs: 2000 };
  const unit = { hostname: "r7", running: "a" as const, runningRelease: record(1000) };
  checkReleaseFits(release, unit, false);
  checkReleaseFits({ ...release, kind: "host:r7" }, unit, false);
  checkReleaseFits({ ...release, signedAtMs: 1000 }, unit, false);
  checkReleaseFits(release, { ...unit, runningRelease: undefined }, false);
  assert.throws(
    () => checkReleaseFits({ ...release, kind: "host:other" }, unit, false),
    (error) => isRtr7Error(error, "RTR7_ERR_SIGNATURE") && /host:other/.test(error.message),
  );
  assert.throws(
    () => checkReleaseFits({ ...release, signedAtMs: 999 }, unit, false),
    (error) => isRtr7Error(error, "RTR7_ERR_DOWNGRADE") && /release v1 that slot a runs/.test(error.message),
  );
  checkReleaseFits({ ...release, signedAtMs: 999 }, unit, true);
});

test("an upload matches its manifest entry by size and SHA-256; a missing entry or another hash is refused", () => {
  checkUploadMatches(pending(), "root", { sha256: rootSha, size: 10 }, "PUT /update/root");
  assert.throws(
    () => checkUploadMatches(pending(), "root", { sha256: bootSha, size: 10 }, "PUT /update/root"),
    (error) =>
      isRtr7Error(error, "RTR7_ERR_SIGNATURE") &&
      error.message.includes(`sha256 ${bootSha}; the manifest says 10 bytes, sha256 ${rootSha}`),
  );
  assert.throws(
    () => checkUploadMatches(pending(), "root", { sha256: rootSha, size: 11 }, "PUT /update/root"),
    /root\.img does not match/,
  );
  assert.throws(
    () => checkUploadMatches(pending(), "mbr", { sha256: rootSha, size: 10 }, "PUT /update/mbr"),
    /lists no mbr\.img/,
  );
});

test("switch and testboot: anything goes without a trusted key; with one, a matched signed manifest or the slot's own release", () => {
  const base = { action: "testboot" as const, slot: "b" as const, slotRelease: undefined };
  assert.deepEqual(decideBoot({ ...base, trustedKeyIds: [], pending: undefined }), { allow: true });

  const refusal = (verdict: ReturnType<typeof decideBoot>): string => {
    assert.equal(verdict.allow, false);
    if (verdict.allow) return "";
    assert.equal(verdict.error.code, "RTR7_ERR_SIGNATURE");
    return verdict.error.message;
  };
  const keys = ["K"];
  assert.match(refusal(decideBoot({ ...base, trustedKeyIds: keys, pending: undefined })), /unsigned/);
  assert.match(
    refusal(decideBoot({ ...base, trustedKeyIds: keys, pending: pending({ matched: { root: match } }) })),
    /boot\.img was not uploaded/,
  );
  assert.match(
    refusal(decideBoot({ ...base, trustedKeyIds: keys, pending: pending() })),
    /root\.img and boot\.img were not uploaded/,
  );
  assert.match(
    refusal(decideBoot({ ...base, trustedKeyIds: keys, pending: pending({ slot: "a" }) })),
    /is for slot a, not b/,
  );
  assert.match(
    refusal(decideBoot({ ...base, trustedKeyIds: keys, pending: pending({ verified: false }) })),
    /unsigned/,
  );

  const matched = pending({ matched: { root: match, boot: { ...match, sha256: bootSha, size: 20 } } });
  const allowed = decideBoot({ ...base, trustedKeyIds: keys, pending: matched });
  assert.deepEqual(allowed, {
    allow: true,
    record: { version: "v2", kind: "fleet", keyId: "K", signedAtMs: 2000, manifestSha256: "c".repeat(64) },
  });
  // Back to a slot that still holds a verified release (a rollback's switch): no manifest needed.
  assert.deepEqual(
    decideBoot({
      ...base,
      action: "switch",
      trustedKeyIds: keys,
      pending: undefined,
      slotRelease: record(1),
    }),
    { allow: true },
  );
});

test("commit: refused on a trusting unit for a slot other than the committed one without a release record", () => {
  const base = { running: "b" as const, committed: "a" as const, runningRelease: undefined };
  assert.equal(decideCommit({ ...base, trustedKeyIds: [] }), undefined);
  assert.equal(decideCommit({ ...base, trustedKeyIds: ["K"], committed: "b" }), undefined);
  assert.equal(decideCommit({ ...base, trustedKeyIds: ["K"], runningRelease: record(1) }), undefined);
  const refused = decideCommit({ ...base, trustedKeyIds: ["K"] });
  assert.ok(refused && isRtr7Error(refused, "RTR7_ERR_SIGNATURE"));
  assert.match(refused.message, /slot b holds no verified release/);
  assert.ok(decideCommit({ ...base, trustedKeyIds: ["K"], committed: undefined }));
});
