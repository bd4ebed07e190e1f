// The remote fleet server's release store (updates/fleet/serve/
// release-store.ts) and its HTTPS routes: a signed release made here
// (lib/trust's signManifest over a small manifest) is uploaded file by file
// with the admin's credential and published; an unsigned one, one signed by
// a key the server does not trust, and one whose image does not match its
// manifest are refused, leaving nothing published; downloads answer Range
// with 206 and the right bytes, and the bytes-served counter shows that a
// download resumed from where it was cut sends each byte once.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { access, mkdir, writeFile } from "node:fs/promises";
import https from "node:https";
import path from "node:path";
import Fastify from "fastify";
import { isRtr7Error } from "../../lib/errors.js";
import { installErrorHandlers } from "../../lib/http-error.js";
import { silentLogger } from "../../lib/log.js";
import { makeUnitCertificate } from "../../lib/tls/unit-certificate.js";
import { generateSigningKey } from "../../lib/trust/minisign.js";
import { signManifest } from "../../lib/trust/release-signature.js";
import { requireBasicAuth, sameSecret } from "../../updates/fleet/serve/basic-auth.js";
import { registerReleaseRoutes } from "../../updates/fleet/serve/release-routes.js";
import { ReleaseStore } from "../../updates/fleet/serve/release-store.js";
import { serverRequest, type ServerAccess } from "../../updates/fleet/serve/server-client.js";
import { scratchDir } from "../helpers/scratch.js";

const log = silentLogger();
const fleetKey = generateSigningKey();
const admin = { username: "admin", password: "correct horse" };

async function makeRelease(
  dir: string,
  version: string,
  options: { sign?: boolean; key?: typeof fleetKey; tamper?: boolean } = {},
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const images: { name: string; size: number; sha256: string }[] = [];
  for (const [name, size] of [
    ["mbr.img", 512],
    ["boot.img", 64 * 1024],
    ["root.img", 3 * 1024 * 1024],
  ] as const) {
    const bytes = randomBytes(size);
    await writeFile(path.join(dir, name), bytes);
    images.push({ name, size, sha256: createHash("sha256").update(bytes).digest("hex") });
  }
  const manifest = Buffer.from(JSON.stringify({ anyUnit: true, version, images }, null, 2));
  await writeFile(path.join(dir, "manifest.json"), manifest);
  if (options.sign !== false)
    await writeFile(
      path.join(dir, "manifest.json.minisig"),
      signManifest(manifest, options.key ?? fleetKey, Date.now()),
    );
  if (options.tamper) await writeFile(path.join(dir, "root.img"), randomBytes(3 * 1024 * 1024));
  return dir;
}

async function startStore(t: TestContext) {
  const data = await scratchDir(t, "release-store");
  const store = new ReleaseStore({ dataDir: data, trustedKeys: () => [fleetKey.publicKey] });
  const certificate = await makeUnitCertificate("fleet-server");
  const app = Fastify({ https: { key: certificate.key, cert: certificate.cert } });
  installErrorHandlers(app, { log });
  registerReleaseRoutes(app, {
    store,
    log,
    admin: requireBasicAuth(
      "rtr7 fleet admin",
      (given) => given.username === admin.username && sameSecret(given.password, admin.password),
    ),
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  t.after(() => app.close());
  const address = app.server.address() as { port: number };
  const access: ServerAccess = {
    url: `https://127.0.0.1:${address.port}`,
    tlsFingerprint: certificate.fingerprint256,
    credentials: admin,
  };
  return { data, store, access, port: address.port };
}

function get(port: number, route: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }>(
    (resolve, reject) => {
      https
        .get({ host: "127.0.0.1", port, path: route, headers, rejectUnauthorized: false }, (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () =>
            resolve({
              status: response.statusCode ?? 0,
              headers: response.headers,
              body: Buffer.concat(chunks),
            }),
          );
        })
        .on("error", reject);
    },
  );
}

async function upload(access: ServerAccess, dir: string, version: string): Promise<void> {
  for (const name of ["mbr.img", "boot.img", "root.img", "manifest.json", "manifest.json.minisig"]) {
    const there = await access_(path.join(dir, name));
    if (there)
      await serverRequest(
        access,
        "PUT",
        `/api/releases/${version}/files/${name}`,
        createReadStream(path.join(dir, name)),
      );
  }
  await serverRequest(access, "POST", `/api/releases/${version}/publish`);
}

const access_ = (file: string) =>
  access(file).then(
    () => true,
    () => false,
  );

test("a signed release uploaded with the admin's credential is published, and served with Range", async (t) => {
  const { data, store, access, port } = await startStore(t);
  const source = await makeRelease(path.join(data, "..", `${path.basename(data)}-src`), "v2");
  t.after(() => import("node:fs/promises").then((fs) => fs.rm(source, { recursive: true, force: true })));

  await assert.rejects(
    serverRequest(
      { ...access, credentials: { username: "admin", password: "wrong" } },
      "POST",
      "/api/releases/v2/publish",
    ),
    (error: unknown) => isRtr7Error(error, "RTR7_ERR_FLEET_AUTH"),
  );
  await upload(access, source, "v2");
  assert.deepEqual(await store.versions(), ["v2"]);
  await assert.rejects(upload(access, source, "v2"), (error: unknown) =>
    isRtr7Error(error, "RTR7_ERR_RELEASE_EXISTS"),
  );

  const whole = await get(port, "/releases/v2/root.img");
  assert.equal(whole.status, 200);
  const root = whole.body;
  assert.equal(root.length, 3 * 1024 * 1024);

  const head = await get(port, "/releases/v2/manifest.json", {});
  assert.equal(head.status, 200);
  const ranged = await get(port, "/releases/v2/boot.img", { range: "bytes=100-199" });
  assert.equal(ranged.status, 206);
  assert.equal(ranged.headers["content-range"], `bytes 100-199/${64 * 1024}`);
  assert.equal(ranged.body.length, 100);
  const boot = (await get(port, "/releases/v2/boot.img")).body;
  assert.deepEqual(ranged.body, boot.subarray(100, 200));
  assert.equal((await get(port, "/releases/v2/boot.img", { range: "bytes=99999999-" })).status, 416);
  assert.equal((await get(port, "/releases/v2/secrets.txt")).status, 404);
  assert.equal((await get(port, "/releases/..%2f..%2fadmin-credential.json/root.img")).status, 400);

  // A download cut after its first MiB, resumed from there: each byte sent once.
  const before = store.bytesServed("v2", "root.img");
  const first = await get(port, "/releases/v2/root.img", { range: "bytes=0-1048575" });
  const rest = await get(port, "/releases/v2/root.img", { range: "bytes=1048576-" });
  assert.equal(rest.status, 206);
  assert.deepEqual(Buffer.concat([first.body, rest.body]), root);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(store.bytesServed("v2", "root.img") - before, root.length);
});

test("an unsigned, a foreign-signed and a mismatched release are refused, and nothing is published", async (t) => {
  const { data, store } = await startStore(t);
  const unsigned = await makeRelease(path.join(data, "in", "unsigned"), "v3", { sign: false });
  await assert.rejects(
    store.publishDirectory(unsigned, "v3"),
    (error: unknown) =>
      isRtr7Error(error, "RTR7_ERR_SIGNATURE") && /not signed/.test((error as Error).message),
  );
  const foreign = await makeRelease(path.join(data, "in", "foreign"), "v4", { key: generateSigningKey() });
  await assert.rejects(store.publishDirectory(foreign, "v4"), (error: unknown) =>
    isRtr7Error(error, "RTR7_ERR_SIGNATURE"),
  );
  const tampered = await makeRelease(path.join(data, "in", "tampered"), "v5", { tamper: true });
  await assert.rejects(
    store.publishDirectory(tampered, "v5"),
    (error: unknown) =>
      isRtr7Error(error, "RTR7_ERR_RELEASE") &&
      /does not match manifest\.json/.test((error as Error).message),
  );
  const renamed = await makeRelease(path.join(data, "in", "renamed"), "v6");
  await assert.rejects(store.publishDirectory(renamed, "v7"), (error: unknown) =>
    isRtr7Error(error, "RTR7_ERR_RELEASE"),
  );
  assert.deepEqual(await store.versions(), []);
  assert.equal(
    await access_(path.join(store.dir, ".staging", "v5")),
    false,
    "a refused release leaves no staging",
  );
});
