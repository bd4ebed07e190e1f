// The unit's update API over real HTTP, with curl as the client (and a raw
// socket for uploads that end early), against file-backed unit paths: the
// gokrazy protocol's replies (features, hashes in both formats), auth, one
// update at a time, truncated uploads that leave nothing bootable behind,
// switch/testboot/commit/reboot reaching the BootControl only for a
// bootable slot, the boot partition replaced only by a complete upload, and
// the MBR's partition table never written. After every test the running
// slot must hold what it held before (update-api-fixture.ts checks it).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { crc32, gzipSync } from "node:zlib";
import type { TestContext } from "node:test";
import { haveTool } from "../../lab/processes.js";
import {
  MiB,
  head,
  makeBootImage,
  makeSquashfs,
  mtoolsEnv,
  runMtools,
  sha256,
  sha256File,
  startUnit,
  waitFor,
  type TestUnit,
} from "./update-api-fixture.js";

const tools = ["curl", "mksquashfs", "mkfs.fat", "mcopy", "mtype", "gzip"];

/** An error reply's JSON body ({code, message, hint}) as one line: "CODE: message". */
function errorLine(body: string): string {
  const parsed = JSON.parse(body) as { code: string; message: string; hint: string };
  assert.equal(typeof parsed.hint, "string", `no hint in ${body}`);
  return `${parsed.code}: ${parsed.message}`;
}

interface Images {
  /** Real squashfs images of about 3 MiB each. */
  running: string;
  first: string;
  second: string;
  /** 2 MiB of random bytes: no squashfs superblock. */
  random: string;
  /** Boot partition images (100 MiB FAT) whose syslinux.cfg says DEFAULT b. */
  newBoot: string;
}

let images: Promise<Images> | undefined;
let imagesDir: string | undefined;
after(async () => {
  if (imagesDir) await rm(imagesDir, { recursive: true, force: true });
});

/** Skips the test when a tool is missing; otherwise the images, made once per run. */
async function prepare(t: TestContext): Promise<Images | undefined> {
  for (const tool of tools) {
    if (!(await haveTool(tool))) {
      t.skip(`needs ${tool}: run scripts/setup.sh`);
      return undefined;
    }
  }
  images ??= (async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "rtr7-update-api-images-"));
    imagesDir = dir;
    const random = path.join(dir, "random.img");
    await writeFile(random, randomBytes(2 * MiB));
    return {
      running: await makeSquashfs(dir, "running", 3 * MiB),
      first: await makeSquashfs(dir, "first", 3 * MiB),
      second: await makeSquashfs(dir, "second", 3 * MiB),
      random,
      // Built without knowing the unit's disk (id 0), as a fleet release is.
      newBoot: await makeBootImage(dir, "boot-new", "b", { diskId: 0 }),
    };
  })();
  return images;
}

async function unitFor(
  t: TestContext,
  boot: { running: "a" | "b"; trial: boolean; committed: "a" | "b" } = {
    running: "a",
    trial: false,
    committed: "a",
  },
): Promise<{ unit: TestUnit; images: Images } | undefined> {
  const prepared = await prepare(t);
  if (!prepared) return undefined;
  return { unit: await startUnit(t, boot, prepared.running), images: prepared };
}

function runMtoolsBuffer(args: string[]): Buffer {
  return execFileSync("mcopy", ["-n", ...args], { env: mtoolsEnv, maxBuffer: 64 * MiB });
}

function crc32Hex(data: Uint8Array): string {
  return crc32(data).toString(16).padStart(8, "0");
}

/** CRC-32 as gzip computes it (the trailer's first four bytes, little-endian): an independent implementation. */
function gzipCrc32Hex(file: string): string {
  const gz = execFileSync("gzip", ["-c", file], { maxBuffer: 64 * 1024 * 1024 });
  return gz
    .readUInt32LE(gz.length - 8)
    .toString(16)
    .padStart(8, "0");
}

/**
 * Sends a PUT that declares `declared` bytes, sends `data`, waits for
 * `beforeClose`, then destroys the socket: an upload that ends early.
 */
async function truncatedPut(
  unit: TestUnit,
  url: string,
  declared: number,
  data: Buffer,
  beforeClose: () => Promise<void>,
): Promise<void> {
  const socket = net.connect(unit.port, "127.0.0.1");
  await once(socket, "connect");
  const credentials = Buffer.from(`gokrazy:${unit.password}`).toString("base64");
  socket.write(
    `PUT ${url} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic ${credentials}\r\n` +
      `Content-Type: application/octet-stream\r\nContent-Length: ${declared}\r\n\r\n`,
  );
  socket.on("error", () => undefined);
  await new Promise<void>((resolve) => socket.write(data, () => resolve()));
  await beforeClose();
  socket.destroy();
}

/** Until the API reports an update in progress (its status JSON's `busy`). */
async function untilBusy(unit: TestUnit): Promise<void> {
  await waitFor("the upload to start", async () => {
    const status = await unit.curl([...unit.auth, "-H", "Accept: application/json", `${unit.baseUrl}/`]);
    return (JSON.parse(status.body) as { busy?: string }).busy !== undefined;
  });
}

test("GET /update/features answers gokrazy's feature list as text, and as JSON when asked", async (t) => {
  const setup = await unitFor(t);
  if (!setup) return;
  const { unit } = setup;
  const text = await unit.curl([...unit.auth, `${unit.baseUrl}/update/features`]);
  assert.equal(text.status, 200);
  assert.equal(text.body, "partuuid,updatehash,gzip,signed,");
  assert.match(text.headers["content-type"] ?? "", /^text\/plain/);
  const json = await unit.curl([
    ...unit.auth,
    "-H",
    "Accept: application/json",
    `${unit.baseUrl}/update/features`,
  ]);
  assert.equal(json.status, 200);
  assert.deepEqual(JSON.parse(json.body), { features: "partuuid,updatehash,gzip,signed,", EEPROM: null });
  // gokrazy's updater refuses any other Content-Type for JSON (it wants this exact value).
  assert.equal(json.headers["content-type"], "application/json");
  const status = await unit.curl([...unit.auth, "-H", "Accept: application/json", `${unit.baseUrl}/`]);
  assert.equal(status.status, 200);
  assert.equal(status.headers["content-type"], "application/json");
});

test("PUT /update/root writes the inactive slot and replies its SHA-256, or CRC-32 when asked", async (t) => {
  const setup = await unitFor(t);
  if (!setup) return;
  const { unit, images } = setup;
  const first = await readFile(images.first);
  const sha = await unit.curl([...unit.auth, "-T", images.first, `${unit.baseUrl}/update/root`]);
  assert.equal(sha.status, 200, sha.body);
  assert.equal(
    sha.body,
    sha256(first),
    "the reply is exactly the hex digest (gokrazy hex-decodes all of it)",
  );
  assert.equal(sha256(await head(unit.paths.roots.b, first.length)), sha.body);
  const recorded = await unit.slotState("b");
  assert.equal(recorded?.state, "complete");
  assert.ok(recorded?.state === "complete" && recorded.size === first.length && recorded.hash === sha.body);

  const second = await readFile(images.second);
  const crc = await unit.curl([
    ...unit.auth,
    "-H",
    "X-Gokrazy-Update-Hash: crc32",
    "-T",
    images.second,
    `${unit.baseUrl}/update/root`,
  ]);
  assert.equal(crc.status, 200, crc.body);
  assert.match(crc.body, /^[0-9a-f]{8}$/);
  assert.equal(crc.body, gzipCrc32Hex(images.second));
  assert.equal(crc32Hex(await head(unit.paths.roots.b, second.length)), crc.body);

  // gokrazy's Go client streams with chunked transfer encoding (no Content-Length).
  const chunked = await unit.curl([
    ...unit.auth,
    "-X",
    "PUT",
    "-H",
    "Transfer-Encoding: chunked",
    "-H",
    "Content-Type:",
    "--data-binary",
    `@${images.first}`,
    `${unit.baseUrl}/update/root`,
  ]);
  assert.equal(chunked.status, 200, chunked.body);
  assert.equal(chunked.body, sha256(first));
  assert.equal(sha256(await head(unit.paths.roots.b, first.length)), sha256(first));
});

test("uploads refuse more bytes than the slot holds, before writing any", async (t) => {
  const setup = await unitFor(t);
  if (!setup) return;
  const { unit } = setup;
  const before = await sha256File(unit.paths.roots.b);
  const tooLarge = path.join(unit.dir, "too-large.img");
  await writeFile(tooLarge, "");
  await truncate(tooLarge, 65 * MiB);
  const reply = await unit.curl([...unit.auth, "-T", tooLarge, `${unit.baseUrl}/update/root`]);
  assert.equal(reply.status, 413);
  assert.match(errorLine(reply.body), /^RTR7_ERR_IMAGE_TOO_LARGE: .*67108864/);
  assert.equal(await sha256File(unit.paths.roots.b), before);
  assert.equal(await unit.slotState("b"), undefined);
  await unit.assertStillServing();
});

test("uploads and boot actions answer 400 to the wrong method", async (t) => {
  const setup = await unitFor(t);
  if (!setup) return;
  const { unit } = setup;
  for (const url of ["/update/root", "/update/boot", "/update/bootonly", "/update/mbr"]) {
    for (const method of ["GET", "POST"]) {
      const reply = await unit.curl([...unit.auth, "-X", method, `${unit.baseUrl}${url}`]);
      assert.equal(reply.status, 400, `${method} ${url}`);
      assert.match(errorLine(reply.body), /^RTR7_ERR_UPDATE_REQUEST: .*expected a PUT request/);
      assert.equal(reply.headers.allow, "PUT");
      await unit.assertStillServing();
    }
  }
  for (const url of ["/update/switch", "/update/testboot", "/update/commit", "/reboot"]) {
    const reply = await unit.curl([...unit.auth, `${unit.baseUrl}${url}`]);
    assert.equal(reply.status, 400, `GET ${url}`);
    assert.match(reply.body, /expected a POST request/);
    await unit.assertStillServing();
  }
  assert.deepEqual(unit.boot.calls, []);
});

test("without the right credentials every route answers 401 and nothing is read or written", async (t) => {
  const setup = await unitFor(t);
  if (!setup) return;
  const { unit, images } = setup;
  const before = await sha256File(unit.paths.roots.b);
  const cases: [string, string[]][] = [
    ["no credentials", []],
    ["a wrong password", ["-u", "gokrazy:wrong"]],
    ["a wrong user", ["-u", `root:${unit.password}`]],
  ];
  for (const [name, credentials] of cases) {
    const upload = await unit.curl([...credentials, "-T", images.first, `${unit.baseUrl}/update/root`]);
    assert.equal(upload.status, 401, name);
    assert.equal(upload.headers["www-authenticate"], 'Basic realm="gokrazy"');
    assert.match(errorLine(upload.body), /^RTR7_ERR_UPDATE_AUTH: /);
    assert.equal(upload.uploaded, 0, `${name}: curl was never invited to send the body`);
    for (const url of ["/", "/update/features", "/update/switch"]) {
      const reply = await unit.curl([
        ...credentials,
        "-X",
        url === "/update/switch" ? "POST" : "GET",
        `${unit.baseUrl}${url}`,
      ]);
      assert.equal(reply.status, 401, `${name}: ${url}`);
    }
    await unit.assertStillServing();
  }
  assert.equal(await sha256File(unit.paths.roots.b), before);
  assert.equal(await unit.slotState("b"), undefined);
  assert.deepEqual(unit.boot.calls, []);
});

test("a second update while an upload is in flight gets 409 at once; the first still succeeds", async (t) => {
  const setup = await unitFor(t);
  if (!setup) return;
  const { unit, images } = setup;
  const first = unit.curl([
    ...unit.auth,
    "--limit-rate",
    "512K",
    "-T",
    images.first,
    `${unit.baseUrl}/update/root`,
  ]);
  await waitFor(
    "the slot to be marked writing",
    async () => (await unit.slotState("b"))?.state === "writing",
  );
  const second = await unit.curl([...unit.auth, "-T", images.second, `${unit.baseUrl}/update/root`]);
  assert.equal(second.status, 409);
  assert.match(
    errorLine(second.body),
    /^RTR7_ERR_UPDATE_BUSY: PUT \/update\/root: refused, PUT \/update\/root is in progress/,
  );
  assert.equal(second.uploaded, 0, "the second body was never invited");
  for (const [method, url] of [
    ["POST", "/update/switch"],
    ["POST", "/update/testboot"],
    ["POST", "/update/commit"],
    ["POST", "/reboot"],
  ] as const) {
    const reply = await unit.curl([...unit.auth, "-X", method, `${unit.baseUrl}${url}`]);
    assert.equal(reply.status, 409, url);
  }
  const boot = await unit.curl([...unit.auth, "-T", images.newBoot, `${unit.baseUrl}/update/boot`]);
  assert.equal(boot.status, 409);
  await unit.assertStillServing();
  const done = await first;
  assert.equal(done.status, 200, done.body);
  assert.equal(done.body, sha256(await readFile(images.first)));
  assert.equal((await unit.slotState("b"))?.state, "complete");
  assert.deepEqual(unit.boot.calls, [], "nothing reached the BootControl");
});

test("an upload that ends early leaves the slot invalid and unbootable until a complete one", async (t) => {
  const setup = await unitFor(t);
  if (!setup) return;
  const { unit, images } = setup;
  const first = await readFile(images.first);
  const second = await readFile(images.second);
  const complete = await unit.curl([...unit.auth, "-T", images.first, `${unit.baseUrl}/update/root`]);
  assert.equal(complete.status, 200);

  // Ends before a byte reached the slot: its bytes are as they were, but the
  // client meant to replace them, so it is not offered to switch or testboot.
  await truncatedPut(unit, "/update/root", second.length, second.subarray(0, 1000), () => untilBusy(unit));
  const early = await unit.waitForEvent((event) => event.kind === "upload" && !event.ok);
  assert.match(early.message ?? "", /ended after \d+ of \d+ bytes/);
  assert.equal((await unit.slotState("b"))?.state, "invalid");
  assert.equal(
    sha256(await head(unit.paths.roots.b, first.length)),
    sha256(first),
    "the slot's bytes changed",
  );
  await unit.assertStillServing();

  // Ends after the slot was written to.
  await truncatedPut(unit, "/update/root", second.length, second.subarray(0, 2 * MiB), () =>
    waitFor("the slot to be marked writing", async () => (await unit.slotState("b"))?.state === "writing"),
  );
  await waitFor(
    "the slot to be marked invalid",
    async () => (await unit.slotState("b"))?.state === "invalid",
  );
  const state = await unit.slotState("b");
  assert.ok(state?.state === "invalid" && /RTR7|ended after/.test(state.why), JSON.stringify(state));
  assert.ok((await head(unit.paths.roots.b, 4096)).equals(Buffer.alloc(4096)), "the first 4 KiB are zeroed");
  await unit.assertStillServing();

  for (const url of ["/update/switch", "/update/testboot"]) {
    const refused = await unit.curl([...unit.auth, "-X", "POST", `${unit.baseUrl}${url}`]);
    assert.equal(refused.status, 409, url);
    assert.match(errorLine(refused.body), /^RTR7_ERR_SLOT_INVALID: slot b .* is not bootable: upload failed/);
    await unit.assertStillServing();
  }
  assert.deepEqual(unit.boot.calls, [], "neither switchTo nor testboot was called");

  const again = await unit.curl([...unit.auth, "-T", images.second, `${unit.baseUrl}/update/root`]);
  assert.equal(again.status, 200);
  const switched = await unit.curl([...unit.auth, "-X", "POST", `${unit.baseUrl}/update/switch`]);
  assert.equal(switched.status, 200, switched.body);
  assert.deepEqual(unit.boot.calls, ["switchTo b"]);
});

test("switch and testboot refuse a slot without a squashfs image", async (t) => {
  const setup = await unitFor(t);
  if (!setup) return;
  const { unit, images } = setup;
  const upload = await unit.curl([...unit.auth, "-T", images.random, `${unit.baseUrl}/update/root`]);
  assert.equal(upload.status, 200, "any bytes may be uploaded");
  for (const url of ["/update/switch", "/update/testboot"]) {
    const refused = await unit.curl([
      ...unit.auth,
      "-X",
      "POST",
      "-H",
      "Accept: application/json",
      `${unit.baseUrl}${url}`,
    ]);
    assert.equal(refused.status, 409);
    const body = JSON.parse(refused.body) as { code: string; message: string; hint: string };
    assert.equal(body.code, "RTR7_ERR_SLOT_INVALID");
    assert.match(body.message, /does not start with a squashfs superblock/);
    assert.match(body.hint, /PUT \/update\/root/);
  }
  assert.deepEqual(unit.boot.calls, []);
});

test("switch, testboot and commit reach the BootControl; root uploads never touch the fallback slot", async (t) => {
  const setup = await unitFor(t);
  if (!setup) return;
  const { unit, images } = setup;
  assert.equal(
    (await unit.curl([...unit.auth, "-T", images.first, `${unit.baseUrl}/update/root`])).status,
    200,
  );
  const testboot = await unit.curl([...unit.auth, "-X", "POST", `${unit.baseUrl}/update/testboot`]);
  assert.equal(testboot.status, 200, testboot.body);
  const switched = await unit.curl([...unit.auth, "-X", "POST", `${unit.baseUrl}/update/switch`]);
  assert.equal(switched.status, 200, switched.body);
  assert.deepEqual(unit.boot.calls, ["testboot b", "switchTo b"]);

  // Slot b is now what the next boot runs: no upload may overwrite it.
  const beforeB = await sha256File(unit.paths.roots.b);
  const afterSwitch = await unit.curl([...unit.auth, "-T", images.second, `${unit.baseUrl}/update/root`]);
  assert.equal(afterSwitch.status, 409);
  assert.match(afterSwitch.body, /slot b is committed/);
  assert.equal(await sha256File(unit.paths.roots.b), beforeB);

  const commit = await unit.curl([...unit.auth, "-X", "POST", `${unit.baseUrl}/update/commit`]);
  assert.equal(commit.status, 200, commit.body);
  assert.match(commit.body, /slot a is committed/);
  assert.deepEqual(unit.boot.calls, ["testboot b", "switchTo b", "commit"]);
  assert.equal(
    (await unit.curl([...unit.auth, "-T", images.second, `${unit.baseUrl}/update/root`])).status,
    200,
  );
});

test("while the running slot is on trial, PUT /update/root is refused and the fallback slot kept", async (t) => {
  const setup = await unitFor(t, { running: "b", trial: true, committed: "a" });
  if (!setup) return;
  const { unit, images } = setup;
  const fallback = await sha256File(unit.paths.roots.a);
  const refused = await unit.curl([...unit.auth, "-T", images.first, `${unit.baseUrl}/update/root`]);
  assert.equal(refused.status, 409);
  assert.match(
    errorLine(refused.body),
    /^RTR7_ERR_UPDATE_BUSY: PUT \/update\/root: the unit runs slot b on trial; commit it or reboot into the committed slot before uploading: the other slot \(a\) is the fallback/,
  );
  assert.equal(await sha256File(unit.paths.roots.a), fallback);
  assert.equal(await unit.slotState("a"), undefined);
  await unit.assertStillServing();

  const commit = await unit.curl([...unit.auth, "-X", "POST", `${unit.baseUrl}/update/commit`]);
  assert.equal(commit.status, 200);
  assert.deepEqual(unit.boot.calls, ["commit"]);
  const upload = await unit.curl([...unit.auth, "-T", images.first, `${unit.baseUrl}/update/root`]);
  assert.equal(upload.status, 200, "after commit, slot a is no longer the fallback");
});

test("POST /reboot replies, then reboots with kexec unless kexec=off; bad forms are refused", async (t) => {
  const setup = await unitFor(t);
  if (!setup) return;
  const { unit } = setup;
  const bad = await unit.curl([...unit.auth, "-d", "kexec=maybe", `${unit.baseUrl}/reboot`]);
  assert.equal(bad.status, 400);
  assert.match(errorLine(bad.body), /^RTR7_ERR_UPDATE_REQUEST: POST \/reboot: kexec="maybe"/);
  const badWait = await unit.curl([...unit.auth, "-d", "wait_per_signal=soon", `${unit.baseUrl}/reboot`]);
  assert.equal(badWait.status, 400);
  assert.deepEqual(unit.boot.calls, []);
  await unit.assertStillServing();

  const reboot = await unit.curl([
    ...unit.auth,
    "-d",
    "kexec=off&async=true&wait_per_signal=10s",
    `${unit.baseUrl}/reboot`,
  ]);
  assert.equal(reboot.status, 200, reboot.body);
  await unit.waitForEvent((event) => event.kind === "reboot");
  assert.deepEqual(unit.boot.calls, ["reboot kexec=false"]);
  const afterReboot = await unit.curl([...unit.auth, "-X", "POST", `${unit.baseUrl}/update/commit`]);
  assert.equal(afterReboot.status, 409, "nothing starts behind a reboot under way");
});

test("POST /reboot uses kexec by default", async (t) => {
  const setup = await unitFor(t);
  if (!setup) return;
  const { unit } = setup;
  const reboot = await unit.curl([...unit.auth, "-X", "POST", `${unit.baseUrl}/reboot`]);
  assert.equal(reboot.status, 200);
  await unit.waitForEvent((event) => event.kind === "reboot");
  assert.deepEqual(unit.boot.calls, ["reboot kexec=true"]);
});

test("a cross-site POST with the right password gets 403 and changes nothing; a DNS-rebound Host gets 421", async (t) => {
  const setup = await unitFor(t, { running: "b", trial: true, committed: "a" });
  if (!setup) return;
  const { unit } = setup;
  // A browser holding the unit's cached credentials, on another site's page.
  for (const headers of [
    ["-H", "Origin: http://evil.example"],
    ["-H", "Sec-Fetch-Site: cross-site"],
  ]) {
    for (const url of ["/update/commit", "/update/switch", "/update/testboot", "/reboot"]) {
      const refused = await unit.curl([...unit.auth, ...headers, "-X", "POST", `${unit.baseUrl}${url}`]);
      assert.equal(refused.status, 403, `${url} ${headers.join(" ")}`);
      assert.match(errorLine(refused.body), /^RTR7_ERR_HTTP_CROSS_SITE: /);
    }
  }
  const rebound = await unit.curl([
    ...unit.auth,
    "-H",
    "Host: evil.example",
    "-X",
    "POST",
    `${unit.baseUrl}/update/commit`,
  ]);
  assert.equal(rebound.status, 421);
  assert.deepEqual(unit.boot.calls, [], "a cross-site request reached the boot control");
  const page = await unit.curl([...unit.auth, `${unit.baseUrl}/`]);
  assert.equal(page.headers["x-frame-options"], "DENY");
  assert.equal(page.headers["x-content-type-options"], "nosniff");
  assert.match(page.headers["content-security-policy"] ?? "", /frame-ancestors 'none'/);
  // The unit's own page (same origin) and tools (no Origin) still commit.
  const commit = await unit.curl([
    ...unit.auth,
    "-H",
    `Origin: ${unit.baseUrl}`,
    "-X",
    "POST",
    `${unit.baseUrl}/update/commit`,
  ]);
  assert.equal(commit.status, 200, commit.body);
  assert.deepEqual(unit.boot.calls, ["commit"]);
});

test("PUT /update/boot writes the inactive slot's kernel beside the committed one; a truncated one changes nothing", async (t) => {
  const setup = await unitFor(t);
  if (!setup) return;
  const { unit, images } = setup;
  const newBoot = await readFile(images.newBoot);
  const before = await sha256File(unit.paths.boot);
  const committedKernel = runMtoolsBuffer(["-i", unit.paths.boot, "::a/vmlinuz", "-"]);

  // Ends early: the boot partition is untouched and the staging file gone.
  await truncatedPut(unit, "/update/boot", newBoot.length, newBoot.subarray(0, 3 * MiB), () =>
    waitFor("the upload to be staged", async () =>
      (await readdir(unit.paths.run)).some((name) => name.startsWith("update-boot.")),
    ),
  );
  const failed = await unit.waitForEvent((event) => event.kind === "upload" && !event.ok);
  assert.equal(failed.target, "boot");
  assert.equal(await sha256File(unit.paths.boot), before);
  assert.deepEqual(await readdir(unit.paths.run), []);
  assert.deepEqual(unit.boot.calls, []);
  await unit.assertStillServing();

  const hashes: string[] = [];
  for (const url of ["/update/boot", "/update/bootonly"]) {
    const reply = await unit.curl([
      ...unit.auth,
      "-H",
      "X-Gokrazy-Update-Hash: crc32",
      "-T",
      images.newBoot,
      `${unit.baseUrl}${url}`,
    ]);
    assert.equal(reply.status, 200, reply.body);
    assert.equal(reply.body, crc32Hex(newBoot));
    hashes.push(await sha256File(unit.paths.boot));
  }
  assert.equal(hashes[0], hashes[1], "the second upload of the same image writes nothing");
  const uploaded = runMtoolsBuffer(["-i", images.newBoot, "::b/vmlinuz", "-"]);
  assert.ok(runMtoolsBuffer(["-i", unit.paths.boot, "::b/vmlinuz", "-"]).equals(uploaded));
  assert.ok(
    runMtoolsBuffer(["-i", unit.paths.boot, "::a/vmlinuz", "-"]).equals(committedKernel),
    "the committed slot's kernel is untouched",
  );
  const config = await runMtools("mtype", ["-i", unit.paths.boot, "::syslinux.cfg"]);
  assert.match(config, /^DEFAULT a$/m, "DEFAULT still names the committed slot");
  assert.match(config, /APPEND root=PARTUUID=1234abcd-03 .*rtr7\.slot=b/, "label b boots this disk's slot b");
  assert.deepEqual(unit.boot.calls, [], "no whole-image copy, so no DEFAULT to restore");
  assert.deepEqual(await readdir(unit.paths.run), []);
});

test("a gzip'd upload is inflated and hashed as the image; a gzip cut short is truncated; another encoding is refused", async (t) => {
  const setup = await unitFor(t);
  if (!setup) return;
  const { unit, images } = setup;
  const image = await readFile(images.first);
  const gzipped = path.join(unit.dir, "first.img.gz");
  await writeFile(gzipped, gzipSync(image));
  const put = (file: string, encoding: string) =>
    unit.curl([
      ...unit.auth,
      "-H",
      `Content-Encoding: ${encoding}`,
      "--data-binary",
      `@${file}`,
      "-X",
      "PUT",
      `${unit.baseUrl}/update/root`,
    ]);
  let reply = await put(gzipped, "gzip");
  assert.equal(reply.status, 200, reply.body);
  assert.equal(reply.body, sha256(image));
  assert.ok((await head(unit.paths.roots.b, image.length)).equals(image));

  const cut = path.join(unit.dir, "cut.img.gz");
  await writeFile(cut, (await readFile(gzipped)).subarray(0, 100_000));
  reply = await put(cut, "gzip");
  assert.equal(reply.status, 400, reply.body);
  assert.match(reply.body, /RTR7_ERR_UPDATE_TRUNCATED/);

  reply = await put(gzipped, "br");
  assert.equal(reply.status, 400, reply.body);
  assert.match(reply.body, /Content-Encoding \\"br\\" is not supported/);
  await unit.assertStillServing();
});

test("PUT /update/mbr writes bytes 0..439 only; the partition table is never written", async (t) => {
  const setup = await unitFor(t);
  if (!setup) return;
  const { unit } = setup;
  const original = await readFile(unit.paths.mbr);
  // What gokrazy's packer sends: 440 bytes of boot code, its disk signature, two zero bytes.
  const gokrazyMbr = Buffer.concat([randomBytes(440), Buffer.from([0xef, 0xbe, 0xad, 0xde, 0, 0])]);
  const upload = path.join(unit.dir, "mbr.img");
  await writeFile(upload, gokrazyMbr);
  const reply = await unit.curl([...unit.auth, "-T", upload, `${unit.baseUrl}/update/mbr`]);
  assert.equal(reply.status, 200, reply.body);
  assert.equal(reply.body, sha256(gokrazyMbr), "the hash of everything sent, as the client compares it");
  const after = await readFile(unit.paths.mbr);
  assert.ok(after.subarray(0, 440).equals(gokrazyMbr.subarray(0, 440)), "the boot code is the new one");
  assert.ok(after.subarray(440).equals(original.subarray(440)), "bytes 440..511 are unchanged");
  const event = await unit.waitForEvent((e) => e.kind === "upload" && e.target === "mbr");
  assert.match(event.message ?? "", /disk identifier deadbeef differs from the disk's 1234abcd/);

  const sector = randomBytes(512);
  await writeFile(upload, sector);
  const whole = await unit.curl([
    ...unit.auth,
    "-H",
    "X-Gokrazy-Update-Hash: crc32",
    "-T",
    upload,
    `${unit.baseUrl}/update/mbr`,
  ]);
  assert.equal(whole.status, 200);
  assert.equal(whole.body, crc32Hex(sector));
  const afterSector = await readFile(unit.paths.mbr);
  assert.ok(afterSector.subarray(0, 440).equals(sector.subarray(0, 440)));
  assert.ok(afterSector.subarray(440).equals(original.subarray(440)));

  await writeFile(upload, randomBytes(600));
  const tooLong = await unit.curl([...unit.auth, "-T", upload, `${unit.baseUrl}/update/mbr`]);
  assert.equal(tooLong.status, 400);
  assert.match(
    errorLine(tooLong.body),
    /^RTR7_ERR_UPDATE_REQUEST: PUT \/update\/mbr: the upload is 600 bytes or more, want at most 512 \(one sector; only bytes 0\.\.439, the boot code, are written: 440\.\.511 hold the disk identifier and the partition table, which updates never write\)/,
  );
  assert.ok((await readFile(unit.paths.mbr)).equals(afterSector), "a refused upload wrote nothing");
  await unit.assertStillServing();
});

test("GET / shows the unit's status, escaped, behind the password", async (t) => {
  const setup = await unitFor(t, { running: "b", trial: true, committed: "a" });
  if (!setup) return;
  const { unit } = setup;
  const page = await unit.curl([...unit.auth, `${unit.baseUrl}/`]);
  assert.equal(page.status, 200);
  assert.match(page.headers["content-type"] ?? "", /^text\/html/);
  for (const fact of ["router-under-test", "v2024-test", "b (on trial, not committed)", "diagd", "4242"]) {
    assert.ok(page.body.includes(fact), `the page shows ${fact}`);
  }
  assert.match(page.body, /<th>committed slot<\/th><td>a<\/td>/);
  assert.ok(!page.body.includes("<script>"), "names are escaped");
  assert.ok(page.body.includes("&#60;script&#62;"));
  const denied = await unit.curl([`${unit.baseUrl}/`]);
  assert.equal(denied.status, 401);
});
