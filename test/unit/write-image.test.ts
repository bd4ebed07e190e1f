// recovery-init's image writer against the real recovery HTTP server on
// loopback, with a file standing in for the disk: images land exactly where
// they belong and nowhere else, every mismatch with the manifest is caught,
// and a disk that does not keep what was written is caught on read-back
// (through the shared verified writer, lib/disk/verified-writer.ts).
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { readFile, writeFile } from "node:fs/promises";
import { buildRecoveryHttp } from "../../server/http/recovery-http.js";
import { FileMap, fileFromBuffer } from "../../lib/served-files.js";
import { silentLogger } from "../../lib/log.js";
import { isRtr7Error } from "../../lib/errors.js";
import type { ManifestImage } from "../../lib/wire/manifest.js";
import { writeImage } from "../../recovery-init/write-image.js";
import { faultyDisk } from "../helpers/faulty-disk.js";
import { scratchDir } from "../helpers/scratch.js";

const diskBytes = 8 * 1024 * 1024;
const fill = 0x5a;

function describe(name: string, bytes: Buffer): ManifestImage {
  return { name, size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") };
}

async function setUp(t: TestContext, images: Record<string, Buffer>) {
  const { app } = buildRecoveryHttp({
    files: new FileMap(Object.entries(images).map(([name, bytes]) => fileFromBuffer(name, bytes))),
    manifest: { images: [] },
    token: "t",
    log: silentLogger(),
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  t.after(() => app.close());
  const dir = await scratchDir(t, "write-image");
  const disk = `${dir}/disk.img`;
  await writeFile(disk, Buffer.alloc(diskBytes, fill));
  const port = (app.server.address() as { port: number }).port;
  return { disk, url: (name: string) => `http://127.0.0.1:${port}/${name}` };
}

test("an image lands at its offset, byte-exact, and nothing around it changes", async (t) => {
  const boot = randomBytes(3 * 1024 * 1024 + 17);
  const { disk, url } = await setUp(t, { "boot.img": boot });
  const progress: number[] = [];
  await writeImage({
    url: url("boot.img"),
    expected: describe("boot.img", boot),
    target: { path: disk, offset: 1024 * 1024, capacity: 4 * 1024 * 1024 },
    onProgress: (done) => progress.push(done),
  });
  const after = await readFile(disk);
  assert.ok(after.subarray(1024 * 1024, 1024 * 1024 + boot.length).equals(boot));
  assert.ok(after.subarray(0, 1024 * 1024).every((byte) => byte === fill));
  assert.ok(after.subarray(1024 * 1024 + boot.length).every((byte) => byte === fill));
  assert.equal(progress.at(-1), boot.length);
});

test("the MBR image gives only its boot code; the partition table after it stays", async (t) => {
  const mbr = randomBytes(512);
  const { disk, url } = await setUp(t, { "mbr.img": mbr });
  await writeImage({
    url: url("mbr.img"),
    expected: describe("mbr.img", mbr),
    target: { path: disk, offset: 0, capacity: 440, writeLimit: 440 },
  });
  const after = await readFile(disk);
  assert.ok(after.subarray(0, 440).equals(mbr.subarray(0, 440)));
  assert.ok(after.subarray(440, 512).every((byte) => byte === fill));
});

test("a hash or size that differs from the manifest is refused", async (t) => {
  const root = randomBytes(200_000);
  const { disk, url } = await setUp(t, { "root.img": root });
  const target = { path: disk, offset: 0, capacity: diskBytes };
  const wrongHash = { ...describe("root.img", root), sha256: "0".repeat(64) };
  await assert.rejects(
    writeImage({ url: url("root.img"), expected: wrongHash, target }),
    (error) =>
      isRtr7Error(error, "RTR7_ERR_IMAGE_VERIFY") && /root\.img: sha256 mismatch/.test(error.message),
  );
  const wrongSize = { ...describe("root.img", root), size: root.length + 1 };
  await assert.rejects(
    writeImage({ url: url("root.img"), expected: wrongSize, target }),
    (error) => isRtr7Error(error, "RTR7_ERR_IMAGE_VERIFY") && /manifest says/.test(error.message),
  );
});

test("an image larger than its partition is refused before a byte is written", async (t) => {
  const root = randomBytes(100_000);
  const { disk, url } = await setUp(t, { "root.img": root });
  await assert.rejects(
    writeImage({
      url: url("root.img"),
      expected: describe("root.img", root),
      target: { path: disk, offset: 0, capacity: 50_000 },
    }),
    (error) => isRtr7Error(error, "RTR7_ERR_IMAGE_TOO_LARGE"),
  );
  assert.ok((await readFile(disk)).every((byte) => byte === fill));
});

test("a download that breaks off is an error naming how far it got", async (t) => {
  const root = randomBytes(600_000);
  const server = createServer((_request, response) => {
    response.writeHead(200, { "content-length": String(root.length) });
    response.write(root.subarray(0, 100_000), () => response.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => server.close());
  const dir = await scratchDir(t, "write-image-broken");
  await writeFile(`${dir}/disk.img`, Buffer.alloc(diskBytes, fill));
  const port = (server.address() as { port: number }).port;
  await assert.rejects(
    writeImage({
      url: `http://127.0.0.1:${port}/root.img`,
      expected: describe("root.img", root),
      target: { path: `${dir}/disk.img`, offset: 0, capacity: diskBytes },
    }),
    (error) =>
      (isRtr7Error(error, "RTR7_ERR_IMAGE_FETCH") && /broke after \d+ of 600000 bytes/.test(error.message)) ||
      (isRtr7Error(error, "RTR7_ERR_IMAGE_VERIFY") && /short read/.test(error.message)),
  );
});

test("a disk that does not keep what was written is caught on read-back", async (t) => {
  const boot = randomBytes(300_000);
  const { disk, url } = await setUp(t, { "boot.img": boot });
  // A failing disk: byte 1234 of the image comes back flipped.
  const device = faultyDisk({ path: disk, flipAt: 4096 + 1234 });
  await assert.rejects(
    writeImage({
      url: url("boot.img"),
      expected: describe("boot.img", boot),
      target: { path: disk, offset: 4096, capacity: diskBytes - 4096 },
      device,
    }),
    (error) =>
      isRtr7Error(error, "RTR7_ERR_IMAGE_VERIFY") && /read back bytes 4096\.\.304095 of /.test(error.message),
  );
  assert.deepEqual(device.synced, [disk], "the image was written and fsynced before it was read back");
  const written = await readFile(disk);
  assert.ok(written.subarray(4096, 4096 + boot.length).equals(boot), "the write itself went through");
});

test("the same image through the same disk with nothing flipped is read back and accepted", async (t) => {
  const boot = randomBytes(300_000);
  const { disk, url } = await setUp(t, { "boot.img": boot });
  const device = faultyDisk();
  await writeImage({
    url: url("boot.img"),
    expected: describe("boot.img", boot),
    target: { path: disk, offset: 4096, capacity: diskBytes - 4096 },
    device,
  });
  assert.deepEqual(
    device.readers.map((reader) => reader.path),
    [disk],
    "the image was read back from the disk",
  );
});
