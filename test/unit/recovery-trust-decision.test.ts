// What a unit trusts during a recovery (issue 14): decideTrust and
// keysToWrite case by case (a unit that trusts nothing is not checked and
// gets the workstation's key; a trusting unit takes only a release its keys
// signed for it or the fleet, else a refusal naming the keys, whose hint
// names `rtr7 recover --new-key`; --new-key replaces the keys unchecked),
// then recovery-init's pieces against a real recovery HTTP server and a
// stand-in disk: the served keys and `replace`, the signed bytes, the keys
// read from an existing /perm, and the keys written after the restore.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { buildRecoveryHttp } from "../../server/http/recovery-http.js";
import { FileMap, fileFromBuffer } from "../../lib/served-files.js";
import { silentLogger } from "../../lib/log.js";
import { formatPublicKey, generateSigningKey, type PublicKey } from "../../lib/trust/minisign.js";
import { manifestSignatureFile, signManifest } from "../../lib/trust/release-signature.js";
import { addTrustedKey, readTrustedKeys } from "../../lib/trust/trusted-keys.js";
import { partitionTableBytes, planLayout } from "../../lib/wire/disk-layout.js";
import {
  decideTrust,
  fetchRelease,
  fetchServedKeys,
  keysToWrite,
  readPreviousKeys,
  refusalError,
  writeKeys,
  type TrustInput,
} from "../../recovery-init/trust.js";
import type { UnitSystem } from "../../recovery-init/system.js";
import { scratchDir } from "../helpers/scratch.js";

const root = { name: "root.img", size: 3, sha256: "a".repeat(64) };
const oldKey = generateSigningKey();
const newKey = generateSigningKey();
const fleetBytes = Buffer.from(`${JSON.stringify({ version: "v1", anyUnit: true, images: [root] })}\n`);
const hostBytes = (hostname: string): Buffer =>
  Buffer.from(`${JSON.stringify({ version: "v1", hostname, images: [root] })}\n`);

function input(overrides: Partial<TrustInput>): TrustInput {
  return {
    previousKeys: [],
    manifestBytes: fleetBytes,
    signature: undefined,
    servedKeys: [newKey.publicKey],
    replace: false,
    hostname: "shop1",
    ...overrides,
  };
}

const ids = (keys: readonly PublicKey[]): string[] => keys.map((key) => key.keyId);

test("decideTrust: a unit that trusts nothing is not checked, and is given the served keys", () => {
  const decision = decideTrust(input({ signature: "not even a signature" }));
  assert.equal(decision.verdict, "accept");
  assert.deepEqual(decision.verdict === "accept" && decision.plan.action, "install-if-none");
  const bare = decideTrust(input({ servedKeys: [] }));
  assert.deepEqual(bare.verdict === "accept" && bare.plan, { action: "keep" });
});

test("decideTrust: a trusting unit takes a release its key signed for the fleet or for it", () => {
  const fleet = decideTrust(
    input({ previousKeys: [oldKey.publicKey], signature: signManifest(fleetBytes, oldKey, 1) }),
  );
  assert.equal(fleet.verdict, "accept");
  assert.match(fleet.verdict === "accept" ? (fleet.checked ?? "") : "", /release v1 \(fleet\)/);
  const own = decideTrust(
    input({
      previousKeys: [oldKey.publicKey],
      manifestBytes: hostBytes("shop1"),
      signature: signManifest(hostBytes("shop1"), oldKey, 1),
    }),
  );
  assert.equal(own.verdict, "accept");
});

test("decideTrust: a trusting unit refuses unsigned, foreign-signed, altered and other-host releases", () => {
  const cases: [string, Partial<TrustInput>, RegExp][] = [
    ["unsigned", {}, /not signed/],
    ["another key", { signature: signManifest(fleetBytes, newKey, 1) }, /key/i],
    [
      "altered bytes",
      {
        signature: signManifest(fleetBytes, oldKey, 1),
        manifestBytes: Buffer.from(`${fleetBytes.toString()} `),
      },
      /./,
    ],
    [
      "another host",
      { manifestBytes: hostBytes("shop2"), signature: signManifest(hostBytes("shop2"), oldKey, 1) },
      /host:shop2, not for this unit \(shop1\)/,
    ],
  ];
  for (const [what, overrides, reason] of cases) {
    const decision = decideTrust(input({ previousKeys: [oldKey.publicKey], ...overrides }));
    assert.equal(decision.verdict, "refuse", what);
    if (decision.verdict !== "refuse") continue;
    assert.match(decision.reason, reason, what);
    assert.deepEqual(decision.keyIds, [oldKey.publicKey.keyId], what);
    const error = refusalError(decision);
    assert.equal(error.code, "RTR7_ERR_SIGNATURE");
    assert.ok(error.message.includes(oldKey.publicKey.keyId), what);
    assert.match(error.message, /nothing was written/);
    assert.match(error.hint, /rtr7 recover --new-key/);
  }
});

test("decideTrust: --new-key skips the check and replaces the keys; without a served key it refuses", () => {
  const decision = decideTrust(input({ previousKeys: [oldKey.publicKey], replace: true }));
  assert.equal(decision.verdict, "accept");
  assert.deepEqual(decision.verdict === "accept" && decision.plan.action, "replace");
  assert.equal(decideTrust(input({ replace: true, servedKeys: [] })).verdict, "refuse");
});

test("keysToWrite: install only into a /perm without keys (a backup's keys are the unit's), replace always", () => {
  const served = [newKey.publicKey];
  assert.deepEqual(keysToWrite({ action: "install-if-none", keys: served }, []), {
    action: "install",
    keys: served,
  });
  assert.deepEqual(keysToWrite({ action: "install-if-none", keys: served }, [oldKey.publicKey]), {
    action: "keep",
  });
  assert.deepEqual(keysToWrite({ action: "keep" }, []), { action: "keep" });
  assert.deepEqual(keysToWrite({ action: "replace", keys: served }, [oldKey.publicKey]), {
    action: "replace",
    keys: served,
  });
});

const token = "f".repeat(32);

function server(options: { keys: string[]; replace?: boolean; signature?: string; bytes?: Buffer }) {
  return buildRecoveryHttp({
    files: new FileMap(
      options.signature === undefined ? [] : [fileFromBuffer(manifestSignatureFile, options.signature)],
    ),
    manifest: { anyUnit: true, images: [root] },
    ...(options.bytes === undefined ? {} : { manifestBytes: options.bytes }),
    token,
    log: silentLogger(),
    trustedKeys: () => Promise.resolve(options.keys),
    ...(options.replace === true ? { replaceTrustedKeys: true } : {}),
  });
}

test("recovery-init fetches the served keys, replace and the signed release over HTTP", async (t) => {
  const signature = signManifest(fleetBytes, newKey, 1);
  const { app } = server({ keys: [formatPublicKey(newKey.publicKey)], signature, bytes: fleetBytes });
  t.after(() => app.close());
  const base = await app.listen({ host: "127.0.0.1", port: 0 });
  await assert.rejects(fetchServedKeys({ baseUrl: base, token: "0".repeat(32) }), /HTTP 403/);
  const served = await fetchServedKeys({ baseUrl: base, token });
  assert.deepEqual(ids(served.keys), [newKey.publicKey.keyId]);
  assert.equal(served.replace, false);
  const release = await fetchRelease(base);
  assert.ok(release.bytes.equals(fleetBytes));
  assert.equal(release.signature, signature);
  const decision = decideTrust(
    input({ previousKeys: [newKey.publicKey], manifestBytes: release.bytes, signature: release.signature }),
  );
  assert.equal(decision.verdict, "accept");

  const { app: replacing } = server({ keys: [formatPublicKey(newKey.publicKey)], replace: true });
  t.after(() => replacing.close());
  const replacingBase = await replacing.listen({ host: "127.0.0.1", port: 0 });
  assert.equal((await fetchServedKeys({ baseUrl: replacingBase, token })).replace, true);
  assert.equal((await fetchRelease(replacingBase)).signature, undefined, "no signature, none fetched");

  // A workstation without a key, and a server without /trusted-keys: nothing to install.
  const { app: none } = server({ keys: [] });
  t.after(() => none.close());
  const noneBase = await none.listen({ host: "127.0.0.1", port: 0 });
  assert.deepEqual(await fetchServedKeys({ baseUrl: noneBase, token }), { keys: [], replace: false });
  const { app: old } = buildRecoveryHttp({
    files: new FileMap([]),
    manifest: { images: [] },
    token,
    log: silentLogger(),
  });
  t.after(() => old.close());
  const oldBase = await old.listen({ host: "127.0.0.1", port: 0 });
  assert.deepEqual(await fetchServedKeys({ baseUrl: oldBase, token }), { keys: [], replace: false });
});

test("the keys of an existing /perm are read through a read-only mount; a blank disk trusts none", async (t) => {
  const dir = await scratchDir(t, "recovery-trust-disk");
  const disk = path.join(dir, "disk");
  const oldPerm = path.join(dir, "old-perm");
  await addTrustedKey(oldPerm, oldKey.publicKey);
  const mountPoint = path.join(dir, "mnt");
  const calls: string[] = [];
  const system = {
    mount: async (device: string, directory: string, type: string, options?: string) => {
      calls.push(`mount ${path.basename(device)} ${type} ${options ?? ""}`);
      // The stand-in "mount" shows the old /perm's keys at the mount point.
      for (const key of (await readTrustedKeys(oldPerm)).keys) await addTrustedKey(directory, key);
    },
    unmount: (directory: string) => {
      calls.push(`unmount ${path.basename(directory)}`);
      return Promise.resolve();
    },
  } as unknown as UnitSystem;
  const say = (): void => undefined;

  await writeFile(disk, Buffer.alloc(4096));
  assert.deepEqual(await readPreviousKeys({ system, disk, mountPoint, say }), []);
  assert.deepEqual(calls, [], "a blank disk was mounted");

  const sector0 = Buffer.alloc(512);
  partitionTableBytes(planLayout(2 * 2 ** 30), 1).copy(sector0, 440);
  await writeFile(disk, sector0);
  const ext4 = Buffer.alloc(2048);
  ext4.writeUInt16LE(0xef53, 1080);
  await writeFile(`${disk}4`, ext4);
  assert.deepEqual(ids(await readPreviousKeys({ system, disk, mountPoint, say })), [oldKey.publicKey.keyId]);
  assert.deepEqual(calls, ["mount disk4 ext4 ro,noload", "unmount mnt"]);
});

test("after the restore: install into a /perm without keys, keep a backup's, replace with --new-key", async (t) => {
  const dir = await scratchDir(t, "recovery-trust-perm");
  const fresh = path.join(dir, "fresh");
  await mkdir(fresh);
  assert.match(await writeKeys(fresh, { action: "install-if-none", keys: [newKey.publicKey] }), /installed/);
  assert.deepEqual(ids((await readTrustedKeys(fresh)).keys), [newKey.publicKey.keyId]);

  const restored = path.join(dir, "restored");
  await addTrustedKey(restored, oldKey.publicKey);
  assert.match(await writeKeys(restored, { action: "install-if-none", keys: [newKey.publicKey] }), /keeps/);
  assert.deepEqual(ids((await readTrustedKeys(restored)).keys), [oldKey.publicKey.keyId]);

  assert.match(await writeKeys(restored, { action: "replace", keys: [newKey.publicKey] }), /replaced/);
  assert.deepEqual(ids((await readTrustedKeys(restored)).keys), [newKey.publicKey.keyId]);
  assert.deepEqual(await readdir(path.join(restored, "rtr7", "trusted-keys")), [
    `${newKey.publicKey.keyId}.pub`,
  ]);
});
