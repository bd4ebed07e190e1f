// End to end: rtr7 recover with its default recovery initramfs (node +
// recovery-init) re-images a QEMU unit's blank 2 GiB disk. Checked from the
// host afterwards: the partition table is DESIGN.md's, partitions 1 and 2
// hold boot.img and root.img byte for byte, the MBR's boot code is mbr.img's,
// and /perm holds the backup's files with their modes and mtimes plus
// interfaces.json. Then: a second run without a backup keeps /perm; a root.img
// that no longer matches the manifest fails the run and the unit stays up;
// a hostile backup is refused, naming the entry.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import {
  mkdir,
  mkdtemp,
  open,
  readFile,
  rm,
  stat,
  truncate,
  utimes,
  writeFile,
  chmod,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import tarStream from "tar-stream";
import { Netns } from "../../lab/netns.js";
import { missingPrerequisite, run, type Started } from "../../lab/processes.js";
import { recoveryUnitArgs } from "../../lab/qemu.js";
import { newestKernel } from "../../lib/host-kernel.js";
import { diskIdentifier, planLayout } from "../../lib/wire/disk-layout.js";
import { recoverArgs, jsonEvents } from "../helpers/scratch.js";

const hostname = "router7";
const unitMac = "52:54:00:12:34:57";
const diskBytes = 2 * 1024 ** 3;
const runTimeoutMs = 420_000;

const missing = (): Promise<string | undefined> =>
  missingPrerequisite(
    ["qemu-system-x86_64", "busybox", "sfdisk", "losetup", "tar", "mke2fs"],
    "network namespaces, a tap device and loop mounts",
  );

interface Lab {
  work: string;
  ns: Netns;
  disk: string;
  images: { mbr: string; boot: string; root: string; backup: string; tree: string };
}

async function makeImages(work: string): Promise<Lab["images"]> {
  const images = {
    mbr: path.join(work, "mbr.img"),
    boot: path.join(work, "boot.img"),
    root: path.join(work, "root.img"),
    backup: path.join(work, "backup.tar.gz"),
    tree: path.join(work, "perm-source"),
  };
  const mbr = randomBytes(512);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  await writeFile(images.mbr, mbr);
  await writeFile(images.boot, randomBytes(3 * 1024 * 1024 + 123));
  await writeFile(images.root, randomBytes(12 * 1024 * 1024 + 4567));
  // /perm's backup, made by GNU tar from a tree with modes and mtimes.
  await mkdir(path.join(images.tree, "dhcp4d"), { recursive: true });
  await mkdir(path.join(images.tree, "wireguard"), { recursive: true });
  await writeFile(path.join(images.tree, "dhcp4d", "leases.json"), '{"leases":[]}\n');
  await writeFile(path.join(images.tree, "wireguard", "wg0.key"), "secret\n");
  await writeFile(path.join(images.tree, "gokr-pw.txt"), "hunter2\n");
  await chmod(path.join(images.tree, "wireguard", "wg0.key"), 0o600);
  await chmod(path.join(images.tree, "wireguard"), 0o700);
  const when = new Date("2024-03-01T12:00:00Z");
  for (const name of ["dhcp4d/leases.json", "wireguard/wg0.key", "gokr-pw.txt", "dhcp4d", "wireguard"]) {
    await utimes(path.join(images.tree, name), when, when);
  }
  await run("tar", ["czf", images.backup, "-C", images.tree, "."]);
  return images;
}

/**
 * One recovery: rtr7 recover, then the unit. beforeUnit runs once the server
 * is serving and before the unit starts.
 */
async function recoverOnce(
  lab: Lab,
  extra: string[],
  options: { images?: Lab["images"]; beforeUnit?: () => Promise<void> } = {},
) {
  const images = options.images ?? lab.images;
  const recover = lab.ns.start(
    process.execPath,
    recoverArgs({
      interfaceName: "tap0",
      hostname,
      images,
      kernel: newestKernel(),
      initrd: "default",
      extra: ["--json", `--timeout=${Math.round(runTimeoutMs / 1000) - 60}s`, ...extra],
    }),
    // The unit's password (recovery writes it to /perm/gokr-pw.txt): the
    // backup's, so /perm holds what the backup did, and no workstation file is made.
    // Its own XDG_CONFIG_HOME: the pin recover records stays in the test's workstation.
    { env: { ...process.env, RTR7_PASSWORD: "hunter2", XDG_CONFIG_HOME: path.join(lab.work, "xdg") } },
  );
  await recover.waitForLine(/"event":"start"/, 240_000);
  await options.beforeUnit?.();
  const unit = lab.ns.start(
    "qemu-system-x86_64",
    recoveryUnitArgs({ tap: "tap0", mac: unitMac, disk: lab.disk }),
  );
  const code = await recover.exited(runTimeoutMs - 30_000);
  return { code, recover, unit };
}

async function bytesAt(file: string, offset: number, length: number): Promise<Buffer> {
  const handle = await open(file, "r");
  try {
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, offset);
    return buffer;
  } finally {
    await handle.close();
  }
}

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** Mounts partition 4 of the disk image read-only and hands its path to inspect. */
async function withPerm<T>(lab: Lab, inspect: (directory: string) => Promise<T>): Promise<T> {
  const perm = planLayout(diskBytes).partitions[3];
  if (!perm) throw new Error("no /perm partition in the layout");
  const loop = (
    await run("losetup", [
      "-f",
      "--show",
      "-r",
      "-o",
      String(perm.byteOffset),
      "--sizelimit",
      String(perm.byteSize),
      lab.disk,
    ])
  ).stdout.trim();
  const mountPoint = await mkdtemp(path.join(tmpdir(), "rtr7-perm-"));
  try {
    await run("mount", ["-t", "ext4", "-o", "ro", loop, mountPoint]);
    try {
      return await inspect(mountPoint);
    } finally {
      await run("umount", [mountPoint]);
    }
  } finally {
    await run("losetup", ["-d", loop]).catch(() => undefined);
    await rm(mountPoint, { recursive: true, force: true });
  }
}

function stopAfter(unit: Started): Promise<void> {
  return unit.stop(2000);
}

describe("recovery-init in QEMU", { timeout: 4 * runTimeoutMs }, () => {
  let lab: Lab | undefined;
  let skip: string | undefined;

  before(async () => {
    skip = await missing();
    if (skip) return;
    const work = await mkdtemp(path.join(tmpdir(), "rtr7-e2e-init-"));
    const ns = await Netns.create("init");
    await ns.addTap("tap0", "10.76.0.254/24");
    const disk = path.join(work, "disk.img");
    await writeFile(disk, "");
    await truncate(disk, diskBytes);
    lab = { work, ns, disk, images: await makeImages(work) };
  });

  after(async () => {
    if (!lab) return;
    await lab.ns.destroy();
    await rm(lab.work, { recursive: true, force: true });
  });

  test("a blank disk is partitioned, written, verified, and /perm restored from the backup", async (t) => {
    if (skip || !lab) return t.skip(skip);
    const { code, recover, unit } = await recoverOnce(lab, [`--backup=${lab.images.backup}`]);
    await stopAfter(unit);
    assert.equal(
      code,
      0,
      `recover failed:\n${recover.output().slice(-3000)}\n--- unit:\n${unit.output().slice(-3000)}`,
    );
    const events = jsonEvents(recover.output());
    assert.ok(
      events.some(
        (event) =>
          event.event === "progress" && event.image === "root.img" && event.bytesDone === event.bytesTotal,
      ),
      "no byte progress for root.img",
    );

    const dump = JSON.parse((await run("sfdisk", ["-J", lab.disk])).stdout) as {
      partitiontable: {
        id: string;
        partitions: { start: number; size: number; type: string; bootable?: boolean }[];
      };
    };
    const layout = planLayout(diskBytes);
    assert.equal(dump.partitiontable.id, `0x${diskIdentifier(hostname).toString(16).padStart(8, "0")}`);
    assert.deepEqual(
      dump.partitiontable.partitions.map((partition) => [partition.start, partition.size]),
      layout.partitions.map((partition) => [partition.byteOffset / 512, partition.byteSize / 512]),
    );

    const [boot, root] = layout.partitions;
    const bootImage = await readFile(lab.images.boot);
    const rootImage = await readFile(lab.images.root);
    assert.equal(sha256(await bytesAt(lab.disk, boot?.byteOffset ?? 0, bootImage.length)), sha256(bootImage));
    assert.equal(sha256(await bytesAt(lab.disk, root?.byteOffset ?? 0, rootImage.length)), sha256(rootImage));
    const mbrImage = await readFile(lab.images.mbr);
    assert.ok((await bytesAt(lab.disk, 0, 440)).equals(mbrImage.subarray(0, 440)), "MBR boot code");

    await withPerm(lab, async (perm) => {
      assert.equal(await readFile(path.join(perm, "dhcp4d/leases.json"), "utf8"), '{"leases":[]}\n');
      const key = await stat(path.join(perm, "wireguard/wg0.key"));
      assert.equal(key.mode & 0o777, 0o600);
      assert.equal(key.mtime.toISOString(), "2024-03-01T12:00:00.000Z");
      assert.equal((await stat(path.join(perm, "wireguard"))).mode & 0o777, 0o700);
      const interfaces = JSON.parse(await readFile(path.join(perm, "interfaces.json"), "utf8")) as {
        interfaces: { hardware_addr: string; name: string; addr: string }[];
      };
      assert.deepEqual(interfaces.interfaces[0], {
        hardware_addr: unitMac,
        name: "lan0",
        addr: "10.76.0.1/24",
      });
    });
  });

  test("a second recovery without a backup keeps /perm's files", async (t) => {
    if (skip || !lab) return t.skip(skip);
    const { code, recover, unit } = await recoverOnce(lab, []);
    await stopAfter(unit);
    assert.equal(code, 0, recover.output().slice(-3000));
    await withPerm(lab, async (perm) => {
      assert.equal(await readFile(path.join(perm, "gokr-pw.txt"), "utf8"), "hunter2\n");
    });
  });

  test("a root.img that no longer matches the manifest fails the run; the unit does not reboot", async (t) => {
    if (skip || !lab) return t.skip(skip);
    const changed = path.join(lab.work, "changed-root.img");
    await writeFile(changed, await readFile(lab.images.root));
    // The manifest is hashed at start; the file then changes under it (a
    // rebuild in the middle of a recovery), so what is served no longer matches.
    const { code, recover, unit } = await recoverOnce(lab, [], {
      images: { ...lab.images, root: changed },
      beforeUnit: async () => {
        const bytes = await readFile(changed);
        bytes[1000] = (bytes[1000] ?? 0) ^ 0xff;
        await writeFile(changed, bytes);
      },
    });
    t.after(() => stopAfter(unit));
    assert.equal(code, 1);
    const error = jsonEvents(recover.output()).find((event) => event.event === "error");
    assert.equal(error?.code, "RTR7_ERR_RECOVERY_FAILED");
    assert.match(String(error?.msg), /root\.img: sha256 mismatch/);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.equal(unit.child.exitCode, null, "the unit rebooted (QEMU exited) after a failed recovery");
    assert.match(unit.output(), /FAILED at write/);
  });

  test("a hostile backup is refused end to end, naming the entry", async (t) => {
    if (skip || !lab) return t.skip(skip);
    const hostile = path.join(lab.work, "hostile.tar.gz");
    const pack = tarStream.pack();
    pack.entry({ name: "ok.txt" }, "fine\n");
    pack.entry({ name: "../escape.txt" }, "evil\n");
    pack.finalize();
    await pipeline(pack, createGzip(), createWriteStream(hostile));
    const { code, recover, unit } = await recoverOnce(lab, [`--backup=${hostile}`]);
    await stopAfter(unit);
    assert.equal(code, 1);
    const error = jsonEvents(recover.output()).find((event) => event.event === "error");
    assert.match(String(error?.msg), /failed at restore: .*\.\.\/escape\.txt/);
  });
});
