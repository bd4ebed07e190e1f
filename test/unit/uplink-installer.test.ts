// router/uplink/update-api-installer.ts: the uplink's real installer
// against the unit's own update API (buildUpdateApi on loopback, file-backed
// slots, a fake boot control): the boot state from GET /, the signed
// manifest checked again by the API's gate, a root image streamed into the
// inactive slot with the read-back hash compared, and the gate's refusals
// (another key's manifest, bytes that are not the manifest's, testboot
// without boot) surfacing as the installer's errors.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFile, truncate, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { silentLogger } from "../../lib/log.js";
import { generateSigningKey } from "../../lib/trust/minisign.js";
import { signManifest } from "../../lib/trust/release-signature.js";
import { addTrustedKey } from "../../lib/trust/trusted-keys.js";
import type { BootControl } from "../../router/boot/boot-control.js";
import type { Slot } from "../../router/unit.js";
import { buildUpdateApi } from "../../router/update-api/server.js";
import { UpdateApiInstaller } from "../../router/uplink/update-api-installer.js";
import { scratchDir } from "../helpers/scratch.js";
import { fileBackedUnitPaths } from "../helpers/unit-paths.js";

const MiB = 1024 * 1024;

function rootImage(bytes: number): Buffer {
  const image = randomBytes(bytes);
  image.write("hsqs", 0, "latin1");
  image.writeBigUInt64LE(BigInt(bytes), 40);
  return image;
}

const sha256 = (data: Buffer): string => createHash("sha256").update(data).digest("hex");

async function setUp(t: TestContext) {
  const dir = await scratchDir(t, "uplink-installer");
  const paths = await fileBackedUnitPaths(dir);
  for (const file of [paths.roots.a, paths.roots.b, paths.boot]) {
    await writeFile(file, "");
    await truncate(file, 8 * MiB);
  }
  await writeFile(paths.mbr, Buffer.alloc(512, 0x11));
  const password = "loopback-password";
  await writeFile(path.join(paths.perm, "gokr-pw.txt"), password);
  const key = generateSigningKey();
  await addTrustedKey(paths.perm, key.publicKey);
  const calls: string[] = [];
  const boot: BootControl = {
    running: () => ({ slot: "a", trial: false }),
    committedSlot: () => Promise.resolve<Slot>("a"),
    switchTo: (slot) => Promise.resolve(void calls.push(`switchTo ${slot}`)),
    testboot: (slot) => Promise.resolve(void calls.push(`testboot ${slot}`)),
    commit: () => Promise.resolve<Slot>("a"),
    checkReboot: () => Promise.resolve(),
    reboot: () => Promise.resolve(void calls.push("reboot")),
    keepDefault: () => Promise.resolve(),
  };
  const app = buildUpdateApi({
    paths,
    boot,
    password,
    log: silentLogger(),
    unit: { hostname: "shop-9", address: "127.0.0.1" },
    statusPage: () => Promise.resolve({ hostname: "shop-9", version: "v1" }),
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  t.after(() => app.close());
  const port = (app.server.address() as AddressInfo).port;
  const installer = new UpdateApiInstaller({
    host: "127.0.0.1",
    ports: { update: port, backupd: port },
    perm: paths.perm,
    bootedAtMs: Date.now() - 5000,
    health: () => Promise.resolve(""),
  });
  const root = rootImage(2 * MiB);
  const manifest = Buffer.from(
    JSON.stringify({
      version: "v2",
      anyUnit: true,
      buildTime: new Date().toISOString(),
      images: [{ name: "root.img", size: root.length, sha256: sha256(root) }],
    }),
  );
  return { paths, calls, installer, key, root, manifest };
}

test("the installer drives the unit's update API: boot state, the signed manifest, root streamed and read back", async (t) => {
  const { paths, calls, installer, key, root, manifest } = await setUp(t);
  const state = await installer.bootState();
  assert.deepEqual(
    { ...state, uptimeSeconds: 0 },
    {
      version: "v1",
      slot: "a",
      trial: false,
      committedSlot: "a",
      uptimeSeconds: 0,
    },
  );

  const foreign = signManifest(manifest, generateSigningKey(), Date.now());
  await assert.rejects(
    installer.acceptManifest({ manifest: manifest.toString(), signature: foreign, allowDowngrade: false }),
    /HTTP 403/,
  );
  await installer.acceptManifest({
    manifest: manifest.toString(),
    signature: signManifest(manifest, key, Date.now()),
    allowDowngrade: false,
  });

  const image = { name: "root.img", size: root.length, sha256: sha256(root) };
  const sink = await installer.openImage(image);
  for (let offset = 0; offset < root.length; offset += 256 * 1024)
    await sink.write(root.subarray(offset, offset + 256 * 1024));
  await sink.finish();
  const slotB = await readFile(paths.roots.b);
  assert.deepEqual(slotB.subarray(0, root.length), root);

  // Not the manifest's bytes: the API's gate refuses them, and the installer says so.
  const wrong = await installer.openImage(image);
  await wrong.write(rootImage(root.length));
  await assert.rejects(wrong.finish(), /HTTP 403/);

  await assert.rejects(installer.openImage({ ...image, name: "evil.img" }), /not an image/);
  // The gate wants root and boot matched before a testboot: nothing is booted.
  await assert.rejects(installer.testboot(60_000), /HTTP 4\d\d/);
  assert.deepEqual(calls, []);
});
