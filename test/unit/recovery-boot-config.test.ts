// A fleet release's boot.img names disk 0 on root=; recovery-init writes it
// raw into the disk and then points syslinux.cfg at this disk's identifier,
// rewriting the one sector in place with pure JavaScript (no mtools on the
// unit). On a real FAT32 image (mkfs.fat + mcopy) inside a disk file: the
// labels name this disk afterwards, DEFAULT and everything else are as they
// were, every other byte of the disk is untouched; a per-host release for
// this disk is left alone, one for another disk is refused, and a boot image
// that is not rtr7's is written as it is. The workstation's check before a
// recovery (server/release.ts) tells the same kinds apart.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { test, type TestContext } from "node:test";
import { promisify } from "node:util";
import { isRtr7Error } from "../../lib/errors.js";
import {
  bootConfigRootDisks,
  parseBootConfig,
  renderBootConfig,
  slotBootConfig,
} from "../../lib/wire/boot-config.js";
import { diskIdentifier } from "../../lib/wire/disk-layout.js";
import { fitBootConfigToDisk } from "../../recovery-init/boot-config.js";
import { readBootFile, writeBootFile } from "../../router/boot/boot-partition.js";
import { releaseKind } from "../../server/release.js";
import { requireRootAndTools } from "../helpers/netns.js";
import { scratchDir } from "../helpers/scratch.js";

const run = promisify(execFile);
const hostname = "shop-1";
const partitionOffset = 1024 * 1024;

/** A FAT32 boot image whose syslinux.cfg names disk `diskId`, and a disk file holding it at partitionOffset. */
async function bootAndDisk(t: TestContext, diskId: number, defaultSlot: "a" | "b" = "b") {
  const dir = await scratchDir(t, "recovery-boot-config");
  const boot = path.join(dir, "boot.img");
  await run("truncate", ["-s", "40M", boot]);
  await run("mkfs.fat", ["-F", "32", "--invariant", boot]);
  await writeBootFile(boot, "a-file.txt", Buffer.from("before the config\n"));
  await writeBootFile(boot, "syslinux.cfg", renderBootConfig(slotBootConfig({ diskId, defaultSlot })));
  const image = await readFile(boot);
  const disk = path.join(dir, "disk.img");
  const head = Buffer.alloc(partitionOffset, 0x5a);
  const tail = Buffer.alloc(64 * 1024, 0xa5);
  await writeFile(disk, Buffer.concat([head, image, tail]));
  return { dir, boot, disk, image };
}

/** The partition's syslinux.cfg as mtools reads it. */
async function configInDisk(dir: string, disk: string, length: number) {
  const bytes = (await readFile(disk)).subarray(partitionOffset, partitionOffset + length);
  const copy = path.join(dir, "partition.img");
  await writeFile(copy, bytes);
  return parseBootConfig((await readBootFile(copy, "syslinux.cfg")).toString("utf8"));
}

test("a fleet release's syslinux.cfg is pointed at this disk in one sector; nothing else changes", async (t) => {
  if (!(await requireRootAndTools(t, ["mkfs.fat", "mcopy"]))) return;
  const { dir, disk, image } = await bootAndDisk(t, 0);
  const before = await readFile(disk);
  const lines: string[] = [];
  const id = diskIdentifier(hostname);
  const fit = await fitBootConfigToDisk({
    disk,
    partitionOffset,
    diskId: id,
    say: (line) => lines.push(line),
  });
  assert.equal(fit, "rewritten");
  const config = await configInDisk(dir, disk, image.length);
  assert.deepEqual(bootConfigRootDisks(config), [id]);
  const hex = id.toString(16).padStart(8, "0");
  assert.match(config.labels.a?.append ?? "", new RegExp(`^root=PARTUUID=${hex}-02 .*rtr7\\.slot=a`));
  assert.match(config.labels.b?.append ?? "", new RegExp(`^root=PARTUUID=${hex}-03 .*rtr7\\.slot=b`));
  assert.equal(config.defaultSlot, "b");
  assert.equal(config.labels.a?.kernel, "a/vmlinuz");
  // Exactly what the builder would have rendered for this unit.
  assert.deepEqual(
    config,
    parseBootConfig(renderBootConfig(slotBootConfig({ diskId: id, defaultSlot: "b" })).toString("utf8")),
  );

  const after = await readFile(disk);
  const changed: number[] = [];
  for (let at = 0; at < after.length; at += 1) if (after[at] !== before[at]) changed.push(at);
  assert.ok(changed.length > 0);
  const first = changed[0] ?? 0;
  assert.ok(first >= partitionOffset, "a byte before the partition changed");
  assert.ok(
    (changed.at(-1) ?? 0) - Math.floor((first - partitionOffset) / 512) * 512 - partitionOffset < 512,
    "more than one sector changed",
  );
  assert.equal(
    (await readBootFile(path.join(dir, "partition.img"), "a-file.txt")).toString(),
    "before the config\n",
  );
  assert.ok(
    lines.some((line) => line.includes("one sector rewritten")),
    lines.join("\n"),
  );

  // Run again (a second recovery of the same disk): it already matches.
  assert.equal(await fitBootConfigToDisk({ disk, partitionOffset, diskId: id }), "matches");
  assert.ok((await readFile(disk)).equals(after));
});

test("a per-host release for this disk is left alone; one for another disk is refused", async (t) => {
  if (!(await requireRootAndTools(t, ["mkfs.fat", "mcopy"]))) return;
  const mine = await bootAndDisk(t, diskIdentifier(hostname));
  const before = await readFile(mine.disk);
  assert.equal(
    await fitBootConfigToDisk({ disk: mine.disk, partitionOffset, diskId: diskIdentifier(hostname) }),
    "matches",
  );
  assert.ok((await readFile(mine.disk)).equals(before));

  const other = await bootAndDisk(t, diskIdentifier("shop-2"));
  const otherBefore = await readFile(other.disk);
  await assert.rejects(
    fitBootConfigToDisk({ disk: other.disk, partitionOffset, diskId: diskIdentifier(hostname) }),
    (error) => isRtr7Error(error, "RTR7_ERR_BOOT_CONFIG") && /built for another unit/.test(error.message),
  );
  assert.ok((await readFile(other.disk)).equals(otherBefore));
});

test("a boot image that is not rtr7's is written as it is", async (t) => {
  const dir = await scratchDir(t, "recovery-boot-config");
  const disk = path.join(dir, "disk.img");
  const bytes = Buffer.alloc(4 * 1024 * 1024, 0x33);
  await writeFile(disk, bytes);
  const lines: string[] = [];
  assert.equal(
    await fitBootConfigToDisk({ disk, partitionOffset, diskId: 1, say: (line) => lines.push(line) }),
    "not-rtr7",
  );
  assert.ok((await readFile(disk)).equals(bytes));
  assert.match(lines.join("\n"), /written as it is/);
});

test("rtr7 recover's check: a fleet release fits any hostname, a per-host one only its own", async (t) => {
  if (!(await requireRootAndTools(t, ["mkfs.fat", "mcopy"]))) return;
  const fleet = await bootAndDisk(t, 0);
  assert.deepEqual(await releaseKind({ boot: fleet.boot }, hostname), { anyUnit: true });
  assert.deepEqual(await releaseKind({ boot: fleet.boot }, "shop-9"), { anyUnit: true });
  const mine = await bootAndDisk(t, diskIdentifier(hostname));
  assert.deepEqual(await releaseKind({ boot: mine.boot }, hostname), { anyUnit: false, hostname });
  await assert.rejects(
    releaseKind({ boot: mine.boot }, "shop-2"),
    (error) => isRtr7Error(error, "RTR7_ERR_RELEASE") && /another hostname, not shop-2/.test(error.message),
  );
  // The build's manifest names the unit it is for.
  const manifest = path.join(fleet.dir, "manifest.json");
  await writeFile(manifest, JSON.stringify({ hostname: "shop-7", images: [] }));
  await assert.rejects(
    releaseKind({ boot: fleet.boot, manifest }, hostname),
    (error) => isRtr7Error(error, "RTR7_ERR_RELEASE") && /built for shop-7, not shop-1/.test(error.message),
  );
  await writeFile(manifest, JSON.stringify({ anyUnit: true, images: [] }));
  assert.deepEqual(await releaseKind({ boot: fleet.boot, manifest }, hostname), { anyUnit: true });
  // Not rtr7's images (the CLI tests serve random bytes): nothing to say.
  const junk = path.join(fleet.dir, "junk.img");
  await writeFile(junk, Buffer.alloc(8192, 7));
  assert.deepEqual(await releaseKind({ boot: junk }, hostname), { anyUnit: false });
});
