// PUT /update/boot against real FAT boot partitions (mkfs.fat + mtools, as
// on a unit), through the update API over HTTP with curl:
//  - the upload changes only the inactive slot's kernel and initrd, FAT
//    metadata, and the one sector of syslinux.cfg: every sector the
//    committed slot boots from (its kernel, initrd, label, the loaders) is
//    byte-identical afterwards;
//  - a boot partition of the layout before per-slot kernels (one /vmlinuz,
//    a syslinux.cfg of 450 bytes) is migrated by the same safe writes: the
//    committed slot keeps booting its old files, the new slot gets its own;
//  - the whole-image copy, as gokrazy does it, happens only when asked for
//    (/perm/rtr7/update.json) or when the image is not rtr7's;
//  - a boot upload to the committed slot is refused, as a root upload is.
// Switch and commit rewriting syslinux.cfg as one sector are shown in
// test/unit/boot-control.test.ts.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test, type TestContext } from "node:test";
import { haveTool } from "../../lab/processes.js";
import { locateRootFile } from "../../lib/disk/fat32.js";
import { parseBootConfig } from "../../lib/wire/boot-config.js";
import { partitionReader } from "../../router/boot/boot-partition.js";
import {
  MiB,
  makeBootImage,
  mtoolsEnv,
  sha256,
  sha256File,
  startUnit,
  makeSquashfs,
  type TestUnit,
} from "./update-api-fixture.js";

const tools = ["curl", "mksquashfs", "mkfs.fat", "mcopy", "mmd"];
let scratch: string | undefined;

after(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function images(t: TestContext): Promise<{ running: string; dir: string } | undefined> {
  for (const tool of tools) {
    if (!(await haveTool(tool))) {
      t.skip(`needs ${tool}: run scripts/setup.sh`);
      return undefined;
    }
  }
  scratch ??= await mkdtemp(path.join(tmpdir(), "rtr7-boot-upload-"));
  const dir = await mkdtemp(path.join(scratch, "case-"));
  return { running: await makeSquashfs(dir, "running", MiB), dir };
}

function mtype(image: string, name: string): Buffer {
  return execFileSync("mcopy", ["-n", "-i", image, `::${name}`, "-"], {
    env: mtoolsEnv,
    maxBuffer: 64 * MiB,
  });
}

function put(unit: TestUnit, image: string): ReturnType<TestUnit["curl"]> {
  return unit.curl([...unit.auth, "-T", image, `${unit.baseUrl}/update/boot`]);
}

/** The 512-byte sectors of two equally long images that differ. */
function changedSectors(before: Buffer, after: Buffer): Set<number> {
  const changed = new Set<number>();
  for (let at = 0; at < before.length; at += 512)
    if (!before.subarray(at, at + 512).equals(after.subarray(at, at + 512))) changed.add(at / 512);
  return changed;
}

/** Every sector a file occupies in a FAT image, by walking its clusters (root dir or one level down). */
async function fileSectors(image: string, name: string): Promise<number[]> {
  const read = partitionReader(image);
  const parts = name.split("/");
  if (parts.length === 1) {
    const extent = await locateRootFile(read, name);
    assert.ok(extent, `${name} is in ${image}`);
    return extent.offsets.map((offset) => offset / 512);
  }
  // One directory level: find the file's first cluster with mshowfat.
  const shown = execFileSync("mshowfat", ["-i", image, `::${name}`], { env: mtoolsEnv, encoding: "utf8" });
  const extent = await locateRootFile(read, "syslinux.cfg");
  assert.ok(extent);
  const { dataOffset, clusterBytes } = extent.geometry;
  const sectors: number[] = [];
  for (const match of shown.matchAll(/<(\d+)(?:-(\d+))?>/g)) {
    const first = Number(match[1]);
    const last = Number(match[2] ?? match[1]);
    for (let cluster = first; cluster <= last; cluster++)
      for (let sector = 0; sector < clusterBytes / 512; sector++)
        sectors.push((dataOffset + (cluster - 2) * clusterBytes) / 512 + sector);
  }
  assert.ok(sectors.length > 0, `mshowfat found ${name}: ${shown}`);
  return sectors;
}

test("a boot upload never touches a sector the committed slot boots from", async (t) => {
  const made = await images(t);
  if (!made) return;
  const unit = await startUnit(t, { running: "a", trial: false, committed: "a" }, made.running);
  const upload = await makeBootImage(made.dir, "boot-next", "a", { diskId: 0 });
  const before = await readFile(unit.paths.boot);
  const committed = [
    ...(await fileSectors(unit.paths.boot, "a/vmlinuz")),
    ...(await fileSectors(unit.paths.boot, "a/initrd.img")),
  ];
  const [config] = await fileSectors(unit.paths.boot, "syslinux.cfg");

  const reply = await put(unit, upload);
  assert.equal(reply.status, 200, reply.body);
  assert.equal(reply.body, sha256(await readFile(upload)));
  const afterUpload = await readFile(unit.paths.boot);
  const changed = changedSectors(before, afterUpload);
  for (const sector of committed)
    assert.ok(!changed.has(sector), `sector ${sector} of slot a's files changed`);
  // Label b already named this disk's slot b and b/vmlinuz: the image's root= (disk 0) is not copied.
  assert.ok(!changed.has(config ?? -1), "syslinux.cfg needed no change");
  assert.ok(mtype(unit.paths.boot, "b/vmlinuz").equals(mtype(upload, "b/vmlinuz")));
  // The config is still one sector in the same place, DEFAULT a, label a as it was.
  const [configAfter] = await fileSectors(unit.paths.boot, "syslinux.cfg");
  assert.equal(configAfter, config);
  const parsed = parseBootConfig(mtype(unit.paths.boot, "syslinux.cfg").toString("utf8"));
  const original = parseBootConfig(mtype(upload, "syslinux.cfg").toString("utf8"));
  assert.equal(parsed.defaultSlot, "a");
  assert.equal(parsed.labels.b?.kernel, "b/vmlinuz");
  assert.match(parsed.labels.b?.append ?? "", /^root=PARTUUID=1234abcd-03 /);
  assert.ok(
    original.labels.b?.append.startsWith("root=PARTUUID=00000000-03 "),
    "the image was built for no disk",
  );
});

test("a boot partition of the layout before per-slot kernels is migrated by the same safe writes", async (t) => {
  const made = await images(t);
  if (!made) return;
  const unit = await startUnit(t, { running: "a", trial: false, committed: "a" }, made.running);
  const legacy = await makeBootImage(made.dir, "boot-legacy", "a", { legacy: true });
  await writeFile(unit.paths.boot, await readFile(legacy));
  const configBefore = mtype(unit.paths.boot, "syslinux.cfg");
  assert.ok(configBefore.length > 400 && configBefore.length <= 512, `${configBefore.length} bytes`);
  const kernelSectors = await fileSectors(unit.paths.boot, "vmlinuz");
  const before = await readFile(unit.paths.boot);

  const upload = await makeBootImage(made.dir, "boot-new", "a");
  const reply = await put(unit, upload);
  assert.equal(reply.status, 200, reply.body);
  const changed = changedSectors(before, await readFile(unit.paths.boot));
  for (const sector of kernelSectors) assert.ok(!changed.has(sector), "the committed /vmlinuz is untouched");
  const config = mtype(unit.paths.boot, "syslinux.cfg");
  assert.equal(config.length, configBefore.length, "rewritten in place at its old size");
  const parsed = parseBootConfig(config.toString("utf8"));
  assert.equal(parsed.defaultSlot, "a");
  assert.equal(parsed.labels.a?.kernel, "vmlinuz", "slot a keeps booting the files it booted");
  assert.equal(parsed.labels.b?.kernel, "b/vmlinuz");
  assert.ok(mtype(unit.paths.boot, "b/initrd.img").equals(mtype(upload, "b/initrd.img")));
  assert.deepEqual(unit.boot.calls, []);
});

test("the whole image is copied only when /perm/rtr7/update.json asks, or the image is not rtr7's", async (t) => {
  const made = await images(t);
  if (!made) return;
  const unit = await startUnit(t, { running: "a", trial: false, committed: "a" }, made.running);
  const upload = await makeBootImage(made.dir, "boot-next", "b");
  await mkdir(path.join(unit.paths.perm, "rtr7"), { recursive: true });
  await writeFile(path.join(unit.paths.perm, "rtr7", "update.json"), '{"bootWrite": "image"}\n');
  let reply = await put(unit, upload);
  assert.equal(reply.status, 200, reply.body);
  assert.equal(await sha256File(unit.paths.boot), sha256(await readFile(upload)), "byte for byte the image");
  assert.deepEqual(unit.boot.calls, ["keepDefault a"], "DEFAULT set back to the committed slot");

  // A FAT image without syslinux.cfg (another project's boot partition).
  await rm(path.join(unit.paths.perm, "rtr7", "update.json"));
  const foreign = path.join(made.dir, "foreign.img");
  await writeFile(foreign, await readFile(upload));
  execFileSync("mdel", ["-i", foreign, "::syslinux.cfg"], { env: mtoolsEnv });
  reply = await put(unit, foreign);
  assert.equal(reply.status, 200, reply.body);
  assert.equal(await sha256File(unit.paths.boot), sha256(await readFile(foreign)));
  assert.deepEqual(unit.boot.calls, ["keepDefault a", "keepDefault a"]);
});

test("a boot upload to the committed slot is refused with 409 and writes nothing", async (t) => {
  const made = await images(t);
  if (!made) return;
  // Switched to b, not rebooted: b is what the next boot runs.
  const unit = await startUnit(t, { running: "a", trial: false, committed: "b" }, made.running);
  const upload = await makeBootImage(made.dir, "boot-next", "a");
  const before = await sha256File(unit.paths.boot);
  const reply = await put(unit, upload);
  assert.equal(reply.status, 409, reply.body);
  assert.match(reply.body, /RTR7_ERR_UPDATE_BUSY.*PUT \/update\/boot: slot b is committed/);
  assert.equal(await sha256File(unit.paths.boot), before);
});

test("a slot whose boot files were being written when the power went is refused by switch and testboot until a boot upload completes", async (t) => {
  const made = await images(t);
  if (!made) return;
  const unit = await startUnit(t, { running: "a", trial: false, committed: "a" }, made.running);
  const root = await makeSquashfs(made.dir, "next-root", MiB);
  let reply = await unit.curl([...unit.auth, "-T", root, `${unit.baseUrl}/update/root`]);
  assert.equal(reply.status, 200, reply.body);
  // What a cut in the middle of the kernel's write leaves on /perm.
  await mkdir(path.join(unit.paths.perm, "rtr7"), { recursive: true });
  await writeFile(
    path.join(unit.paths.perm, "rtr7", "boot-files.json"),
    '{"b": {"state": "writing", "since": "2026-11-29T10:00:00.000Z"}}\n',
  );
  for (const action of ["testboot", "switch"]) {
    reply = await unit.curl([...unit.auth, "-X", "POST", `${unit.baseUrl}/update/${action}`]);
    assert.equal(reply.status, 409, reply.body);
    assert.match(reply.body, /RTR7_ERR_SLOT_INVALID.*boot upload began writing its kernel and initrd/);
  }
  assert.deepEqual(unit.boot.calls, []);
  reply = await put(unit, await makeBootImage(made.dir, "boot-next", "a"));
  assert.equal(reply.status, 200, reply.body);
  assert.deepEqual(
    JSON.parse(await readFile(path.join(unit.paths.perm, "rtr7", "boot-files.json"), "utf8")),
    {},
  );
  reply = await unit.curl([...unit.auth, "-X", "POST", `${unit.baseUrl}/update/testboot`]);
  assert.equal(reply.status, 200, reply.body);
  assert.deepEqual(unit.boot.calls, ["testboot b"]);
});
