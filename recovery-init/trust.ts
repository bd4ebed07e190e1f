// What the unit trusts, during a recovery (issue 14). Two rules:
//  - A unit that trusted a key before this recovery takes only a release
//    signed by one of its keys, of a kind that fits it (fleet, or
//    host:<the hostname being recovered>); anything else is refused before
//    a byte reaches the disk. A blank disk, or a /perm without keys, trusts
//    nothing and is not checked, as before signed releases.
//  - After the backup is restored, a /perm that holds no key gets the
//    workstation's (GET /trusted-keys, behind the session token); keys the
//    backup brought are the unit's own and stay. `rtr7 recover --new-key`
//    (a person's decision, made on the workstation) makes the reply say
//    `replace`: the old keys are not asked, and are replaced by the served.
//
// Where the previous keys come from, and why then: recovery writes the
// partition table before it mounts /perm, so by the time /perm is mounted
// for the restore the check would come too late (the disk is already
// partitioned, and a refused release must write nothing). So the keys are
// read first, from the disk as it is: if its MBR has a partition 4 holding
// ext4 (gokrazy's /perm), that partition is mounted read-only with
// `noload` (no journal replay, which would write) on a separate directory,
// its rtr7/trusted-keys read, and unmounted, all before the partition step.
// Partition 4 is read wherever the current table puts it, not only where the
// new layout would: the unit's trust is what its disk says now. An ext4 that
// does not mount even read-only leaves the unit's trust unknown, and the
// recovery stops rather than guess (perm.ts refuses to format it too).
//
// The decision itself is pure (decideTrust, keysToWrite), tested without a
// disk; the rest fetches, reads and writes around it.
import { open } from "node:fs/promises";
import { Rtr7Error, describeError } from "../lib/errors.js";
import { parsePublicKey, type PublicKey } from "../lib/trust/minisign.js";
import { manifestSignatureFile, verifyManifest } from "../lib/trust/release-signature.js";
import { addTrustedKey, readTrustedKeys, replaceTrustedKeys } from "../lib/trust/trusted-keys.js";
import { parsePartitionTable, partitionDevice, partitionNumbers } from "../lib/wire/disk-layout.js";
import { trustedKeysPath, type TrustedKeysReply } from "../lib/wire/trusted-keys.js";
import { hasExt4 } from "./perm.js";
import type { UnitSystem } from "./system.js";

/** The hint of a refusal on a unit whose keys do not accept the release. */
export const newKeyHint =
  "The unit trusts other keys than the one this release is signed with. Sign the release with the fleet's key (`rtr7 image build` with the unit's key in `rtr7 keys`), or, if the unit's old key is lost and you mean to replace it, run `rtr7 recover --new-key`.";

export interface TrustInput {
  /** The keys the unit trusted before this recovery (its existing /perm's). */
  previousKeys: readonly PublicKey[];
  /** manifest.json as served, byte for byte. */
  manifestBytes: Buffer;
  /** manifest.json.minisig's text, or undefined when none was served. */
  signature: string | undefined;
  /** The workstation's keys (GET /trusted-keys). */
  servedKeys: readonly PublicKey[];
  /** `rtr7 recover --new-key`: the served keys replace the unit's. */
  replace: boolean;
  /** The hostname being recovered; a host release must name it. */
  hostname: string;
}

/** What to do with /perm's trusted keys once the backup is restored. */
export type KeyPlan =
  | { action: "replace"; keys: readonly PublicKey[] }
  | { action: "install-if-none"; keys: readonly PublicKey[] }
  | { action: "keep" };

export type TrustDecision =
  | { verdict: "refuse"; reason: string; keyIds: string[] }
  | { verdict: "accept"; checked: string | undefined; plan: KeyPlan };

/** The check before anything is written, and the plan for the keys afterwards. */
export function decideTrust(input: TrustInput): TrustDecision {
  const keyIds = input.previousKeys.map((key) => key.keyId);
  if (input.replace) {
    if (input.servedKeys.length === 0)
      return {
        verdict: "refuse",
        reason: "replacing the unit's keys was asked, but no key was served",
        keyIds,
      };
    return { verdict: "accept", checked: undefined, plan: { action: "replace", keys: input.servedKeys } };
  }
  const plan: KeyPlan =
    input.servedKeys.length === 0
      ? { action: "keep" }
      : { action: "install-if-none", keys: input.servedKeys };
  if (keyIds.length === 0) return { verdict: "accept", checked: undefined, plan };
  if (input.signature === undefined)
    return { verdict: "refuse", reason: `the release is not signed (no ${manifestSignatureFile})`, keyIds };
  let kind: string;
  let checked: string;
  try {
    const verified = verifyManifest(input.manifestBytes, input.signature, input.previousKeys);
    kind = verified.kind;
    checked = `release ${verified.version} (${verified.kind}) signed by key ${verified.keyId}`;
  } catch (error) {
    return { verdict: "refuse", reason: describeError(error), keyIds };
  }
  if (kind !== "fleet" && kind !== `host:${input.hostname}`)
    return {
      verdict: "refuse",
      reason: `the release is signed for ${kind}, not for this unit (${input.hostname}) or the fleet`,
      keyIds,
    };
  return { verdict: "accept", checked, plan };
}

/** What keysToWrite says to do with /perm's keys, given the keys it holds after the restore. */
export type KeyWrite =
  | { action: "replace"; keys: readonly PublicKey[] }
  | { action: "install"; keys: readonly PublicKey[] }
  | { action: "keep" };

export function keysToWrite(plan: KeyPlan, keysOnPerm: readonly PublicKey[]): KeyWrite {
  if (plan.action === "replace") return plan;
  if (plan.action === "install-if-none" && keysOnPerm.length === 0)
    return { action: "install", keys: plan.keys };
  return { action: "keep" };
}

/** The refusal recovery-init reports (step "verify"); the hint names `rtr7 recover --new-key`. */
export function refusalError(decision: Extract<TrustDecision, { verdict: "refuse" }>): Rtr7Error {
  return new Rtr7Error(
    "RTR7_ERR_SIGNATURE",
    `the unit trusts key${decision.keyIds.length === 1 ? "" : "s"} ${decision.keyIds.join(", ") || "(none)"} and refuses this release: ${decision.reason}; nothing was written`,
    { hint: newKeyHint },
  );
}

export interface ServedTrust {
  keys: PublicKey[];
  replace: boolean;
}

/** GET /trusted-keys with the session token; a server without it (404) serves no key. */
export async function fetchServedKeys(options: {
  baseUrl: string;
  token: string;
  fetch?: typeof fetch;
}): Promise<ServedTrust> {
  const response = await (options.fetch ?? fetch)(`${options.baseUrl}${trustedKeysPath}`, {
    headers: { authorization: `Bearer ${options.token}` },
    signal: AbortSignal.timeout(30_000),
  });
  if (response.status === 404) {
    await response.arrayBuffer();
    return { keys: [], replace: false };
  }
  if (response.status !== 200) {
    const text = await response.text().catch(() => "");
    throw new Error(`GET ${trustedKeysPath}: HTTP ${response.status} ${text.slice(0, 200)}`);
  }
  const body = (await response.json()) as Partial<TrustedKeysReply> | null;
  if (!Array.isArray(body?.keys) || !body.keys.every((key) => typeof key === "string"))
    throw new Error(`GET ${trustedKeysPath}: the reply holds no list of keys`);
  const keys = body.keys.map((text, index) =>
    parsePublicKey(text, `GET ${trustedKeysPath} key ${index + 1}`),
  );
  return { keys, replace: body.replace === true };
}

export interface ServedRelease {
  bytes: Buffer;
  signature: string | undefined;
}

/** manifest.json's bytes as served, and manifest.json.minisig when the server has one. */
export async function fetchRelease(baseUrl: string, doFetch: typeof fetch = fetch): Promise<ServedRelease> {
  const response = await doFetch(`${baseUrl}/manifest.json`);
  if (response.status !== 200) throw new Error(`GET ${baseUrl}/manifest.json: HTTP ${response.status}`);
  const bytes = Buffer.from(await response.arrayBuffer());
  const signed = await doFetch(`${baseUrl}/${manifestSignatureFile}`);
  if (signed.status === 404) {
    await signed.arrayBuffer();
    return { bytes, signature: undefined };
  }
  if (signed.status !== 200)
    throw new Error(`GET ${baseUrl}/${manifestSignatureFile}: HTTP ${signed.status}`);
  return { bytes, signature: await signed.text() };
}

/**
 * The keys on the disk's existing /perm (partition 4 of its current MBR),
 * read through a read-only mount on `mountPoint`; none for a blank disk,
 * a disk without partition 4, or a partition 4 without ext4.
 */
export async function readPreviousKeys(options: {
  system: UnitSystem;
  disk: string;
  mountPoint: string;
  say: (line: string) => void;
}): Promise<PublicKey[]> {
  const { system, disk, mountPoint, say } = options;
  const sector0 = Buffer.alloc(512);
  const handle = await open(disk, "r");
  try {
    await handle.read(sector0, 0, 512, 0);
  } finally {
    await handle.close();
  }
  let hasPerm: boolean;
  try {
    hasPerm = parsePartitionTable(sector0).partitions.some((entry) => entry.number === partitionNumbers.perm);
  } catch {
    hasPerm = false;
  }
  const device = partitionDevice(disk, partitionNumbers.perm);
  if (!hasPerm || !(await hasExt4(device).catch(() => false))) {
    say(`${disk} holds no /perm yet: the unit trusts no key`);
    return [];
  }
  try {
    await system.mount(device, mountPoint, "ext4", "ro,noload");
  } catch (error) {
    throw new Error(
      `${device} holds ext4 that does not mount read-only, so what the unit trusts cannot be read: ${describeError(error)}`,
      { cause: error },
    );
  }
  try {
    const { keys, skipped } = await readTrustedKeys(mountPoint);
    for (const line of skipped) say(`not a key, not trusted: ${line}`);
    say(
      keys.length === 0
        ? `${device}: /perm trusts no key`
        : `${device}: /perm trusts ${keys.map((key) => key.keyId).join(", ")}`,
    );
    return keys;
  } finally {
    await system.unmount(mountPoint);
  }
}

/** Carries out keysToWrite on the mounted /perm; returns a line saying what was done. */
export async function writeKeys(perm: string, plan: KeyPlan): Promise<string> {
  const { keys: onPerm } = await readTrustedKeys(perm);
  const write = keysToWrite(plan, onPerm);
  const ids = (keys: readonly PublicKey[]): string => keys.map((key) => key.keyId).join(", ");
  switch (write.action) {
    case "replace":
      await replaceTrustedKeys(perm, write.keys);
      return `replaced the trusted keys${onPerm.length ? ` ${ids(onPerm)}` : ""} by ${ids(write.keys)} (--new-key)`;
    case "install":
      for (const key of write.keys) await addTrustedKey(perm, key);
      return `the unit trusted no key: installed the workstation's ${ids(write.keys)}`;
    case "keep":
      return onPerm.length
        ? `the unit keeps its trusted keys ${ids(onPerm)}`
        : "the workstation offers no key: the unit trusts none, as before";
  }
}
