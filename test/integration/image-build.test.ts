// `rtr7 image build` with the real tools: two builds of the same inputs (one
// through the library, one through the CLI with --json) are byte-identical;
// root.img holds the paths the unit relies on and every --add; boot.img is a
// 100 MiB FAT with syslinux, the kernel, the boot initrd and a syslinux.cfg
// naming the hostname's disk id; mbr.img is syslinux's MBR code; the manifest
// matches the files. A failing build (early or late) leaves --out as it was.
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdir, readFile, readdir, stat, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { run } from "../../lab/processes.js";
import { isRtr7Error } from "../../lib/errors.js";
import { parseManifest } from "../../lib/wire/manifest.js";
import { bootBytes, diskIdentifier, partitionUuid } from "../../lib/wire/disk-layout.js";
import { bootConfigSector } from "../../router/boot/boot-partition.js";
import { buildUnitImages } from "../../updates/image/build.js";
import { jsonEvents } from "../helpers/scratch.js";
import {
  cliBuild,
  hostname,
  images,
  inputs,
  libraryBuild,
  marker,
  ready,
  runBuffer,
  runCli,
  sha256,
  unsquashfsCat,
} from "../helpers/image-build-fixture.js";
test("two builds of the same inputs, one through the CLI, give byte-identical images", async (t) => {
  if (!(await ready(t))) return;
  const [library, cli] = await Promise.all([libraryBuild(), cliBuild()]);
  for (const name of images) {
    assert.equal(
      await sha256(path.join(cli.dir, name)),
      await sha256(path.join(library.dir, name)),
      `${name} differs between the two builds`,
    );
  }
  assert.equal(cli.event.version, library.version);
  assert.match(library.version, /^g[0-9a-f]{12}$/);
  assert.equal(cli.event.dir, cli.dir);
  assert.equal(cli.event.hostname, hostname);
  const written = parseManifest(JSON.parse(await readFile(path.join(cli.dir, "manifest.json"), "utf8")));
  assert.deepEqual(cli.event.images, written.images);
  const leftovers = (await readdir(cli.dir)).filter((name) => name.startsWith("."));
  assert.deepEqual(leftovers, [], "the build left its temporary directory behind");
});

test("root.img holds /rtr7/init, node, the tools, the modules, build.json and every --add", async (t) => {
  if (!(await ready(t))) return;
  const { dir, version } = await libraryBuild();
  const root = path.join(dir, "root.img");
  const listing = (await run("unsquashfs", ["-lls", root])).stdout;
  const entry = (inside: string): string | undefined =>
    listing
      .split("\n")
      .find(
        (line) => line.endsWith(` squashfs-root${inside}`) || line.includes(` squashfs-root${inside} -> `),
      );
  for (const inside of [
    "/bin/node",
    "/bin/busybox",
    "/usr/bin/mtools",
    "/usr/sbin/kexec",
    "/etc/rtr7/modules",
  ]) {
    assert.ok(entry(inside), `root.img has no ${inside}`);
  }
  assert.match(entry("/rtr7/init") ?? "", /^-rwxr-xr-x root\/root /);
  assert.match(entry("/bin/node") ?? "", /^-rwxr-xr-x /);
  assert.match(entry("/bin/sh") ?? "", / -> busybox$/);
  for (const command of ["mcopy", "mtype", "mdir"]) {
    assert.match(entry(`/usr/bin/${command}`) ?? "", / -> mtools$/, `no /usr/bin/${command} -> mtools`);
  }
  for (const empty of ["/proc", "/sys", "/dev", "/tmp", "/perm", "/run", "/boot", "/mnt", "/root"]) {
    assert.match(entry(empty) ?? "", /^d/, `no directory ${empty}`);
  }

  const init = await unsquashfsCat(root, "rtr7/init");
  assert.ok(init.startsWith("#!/bin/node\n"), "/rtr7/init does not start with #!/bin/node");
  assert.ok(init.includes(marker), "/rtr7/init is not the bundled --router-entry");

  const modules = (await unsquashfsCat(root, "etc/rtr7/modules")).split("\n").filter((line) => line !== "");
  assert.ok(modules.length > 0);
  for (const wanted of ["virtio_blk.ko", "squashfs.ko", "ext4.ko", "e1000.ko"]) {
    assert.ok(
      modules.some((module) => module.endsWith(`/${wanted}`)),
      `the modules list has no ${wanted}`,
    );
  }
  for (const module of modules) {
    assert.match(module, /^\/lib\/modules\/[^/]+\/.+\.ko$/);
    assert.ok(entry(module), `${module} is listed but not in root.img`);
  }

  const buildInfo = JSON.parse(await unsquashfsCat(root, "etc/rtr7/build.json")) as Record<string, unknown>;
  assert.deepEqual(Object.keys(buildInfo).sort(), [
    "builderVersion",
    "hostname",
    "kernelRelease",
    "nodeVersion",
    "version",
  ]);
  assert.equal(buildInfo.hostname, hostname);
  assert.equal(buildInfo.version, version);
  assert.equal(buildInfo.nodeVersion, process.versions.node);
  assert.deepEqual(JSON.parse(await unsquashfsCat(root, "etc/rtr7/diagd.json")), { tcp: [] });

  assert.equal(await unsquashfsCat(root, "etc/rtr7/extra.txt"), "added by --add\n");
  assert.equal(await unsquashfsCat(root, "opt/site/conf/site.json"), '{"site":true}\n');
  assert.match(entry("/opt/site/current.json") ?? "", / -> conf\/site\.json$/);
});

test("boot.img is a 100 MiB FAT with syslinux for BIOS and UEFI, each slot's kernel and initrd, and slot a as DEFAULT in one sector", async (t) => {
  if (!(await ready(t))) return;
  const { dir } = await libraryBuild();
  const { kernel } = await inputs();
  const boot = path.join(dir, "boot.img");
  assert.equal((await stat(boot)).size, bootBytes);

  const config = (await run("mtype", ["-i", boot, "::syslinux.cfg"])).stdout;
  const id = diskIdentifier(hostname);
  assert.match(config, /^DEFAULT a$/m);
  // One sector, in one cluster: what the unit rewrites in place.
  const sector = await bootConfigSector(boot);
  assert.equal(sector?.size, 512);
  assert.match(config, /LABEL a\n LINUX \/a\/vmlinuz\n INITRD \/a\/initrd\.img\n/);
  assert.match(config, /LABEL b\n LINUX \/b\/vmlinuz\n INITRD \/b\/initrd\.img\n/);
  assert.match(
    config,
    new RegExp(`LABEL a\\n[^]*?APPEND root=PARTUUID=${partitionUuid(id, 2)} [^\\n]*rtr7\\.slot=a`),
  );
  assert.match(
    config,
    new RegExp(`LABEL b\\n[^]*?APPEND root=PARTUUID=${partitionUuid(id, 3)} [^\\n]*rtr7\\.slot=b`),
  );
  const listing = (await run("mdir", ["-a", "-i", boot, "::"])).stdout;
  for (const [name, extension] of [
    ["ldlinux", "sys"],
    ["syslinux", "cfg"],
  ]) {
    assert.match(
      listing,
      new RegExp(`^${name}\\s+${extension}`, "im"),
      `boot.img has no ${name}.${extension}`,
    );
  }
  // The UEFI loader is Debian's syslinux.efi, where x86-64 firmware looks.
  assert.deepEqual(
    await runBuffer("mcopy", ["-n", "-i", boot, "::EFI/BOOT/BOOTX64.EFI", "-"]),
    await readFile("/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi"),
  );
  assert.deepEqual(
    await runBuffer("mcopy", ["-n", "-i", boot, "::EFI/BOOT/ldlinux.e64", "-"]),
    await readFile("/usr/lib/syslinux/modules/efi64/ldlinux.e64"),
  );

  const copied = path.join(path.dirname(dir), "from-boot");
  await mkdir(copied, { recursive: true });
  for (const slot of ["b", "a"])
    await run("mcopy", ["-n", "-o", "-i", boot, `::${slot}/vmlinuz`, `::${slot}/initrd.img`, copied]);
  assert.equal(await sha256(path.join(copied, "vmlinuz")), await sha256(kernel));
  assert.deepEqual(
    await runBuffer("mcopy", ["-n", "-i", boot, "::b/initrd.img", "-"]),
    await readFile(path.join(copied, "initrd.img")),
    "both slots boot the same kernel and initrd",
  );
  const initrd = gunzipSync(await readFile(path.join(copied, "initrd.img"))).toString("latin1");
  assert.ok(initrd.startsWith("070701"), "initrd.img is no gzip'd newc cpio");
  for (const name of ["init\0", "bin/busybox\0", "bin/switch_root\0", "etc/rtr7/modules\0"]) {
    assert.ok(initrd.includes(name), `initrd.img has no ${name.slice(0, -1)}`);
  }
  assert.ok(
    initrd.includes("exec switch_root /newroot /rtr7/init"),
    "the initrd's /init does not switch root",
  );
});

test("mbr.img is syslinux's MBR code, and the manifest names every file's size and SHA-256", async (t) => {
  if (!(await ready(t))) return;
  const { dir, version } = await libraryBuild();
  assert.deepEqual(
    await readFile(path.join(dir, "mbr.img")),
    await readFile("/usr/lib/syslinux/mbr/mbr.bin"),
  );
  const manifest = parseManifest(JSON.parse(await readFile(path.join(dir, "manifest.json"), "utf8")));
  assert.equal(manifest.hostname, hostname);
  assert.equal(manifest.version, version);
  assert.ok(manifest.buildTime && !Number.isNaN(Date.parse(manifest.buildTime)));
  assert.deepEqual(
    manifest.images.map((image) => image.name),
    [...images],
  );
  for (const image of manifest.images) {
    const file = path.join(dir, image.name);
    assert.equal(image.size, (await stat(file)).size, `${image.name}: size`);
    assert.equal(image.sha256, await sha256(file), `${image.name}: sha256`);
  }
});

test("another hostname gives another disk id in syslinux.cfg, and another version", async (t) => {
  if (!(await ready(t))) return;
  const [first, other] = await Promise.all([libraryBuild(), libraryBuild("other-unit")]);
  const config = (await run("mtype", ["-i", path.join(other.dir, "boot.img"), "::syslinux.cfg"])).stdout;
  const otherId = partitionUuid(diskIdentifier("other-unit"), 2);
  assert.notEqual(otherId, partitionUuid(diskIdentifier(hostname), 2));
  assert.match(config, new RegExp(`root=PARTUUID=${otherId} `));
  assert.notEqual(other.version, first.version);
  const buildInfo = JSON.parse(
    await unsquashfsCat(path.join(other.dir, "root.img"), "etc/rtr7/build.json"),
  ) as Record<string, unknown>;
  assert.equal(buildInfo.hostname, "other-unit");
});

test("without --hostname, a fleet release: build.json and the manifest say anyUnit, syslinux.cfg names disk 0; once a key exists it is signed, and minisign -V checks it", async (t) => {
  if (!(await ready(t))) return;
  const input = await inputs();
  const dir = path.join(input.work, "fleet");
  // A workstation with a fleet key: the build signs with no flag.
  const config = path.join(input.work, "fleet-config");
  const env = { ...process.env, XDG_CONFIG_HOME: config };
  assert.equal((await runCli(["keys", "init"], env)).code, 0);
  const result = await runCli(
    [
      "image",
      "build",
      `--out=${dir}`,
      `--kernel=${input.kernel}`,
      ...input.add.map((addition) => `--add=${addition.source}:${addition.destination}`),
      `--router-entry=${input.routerEntry}`,
      "--json",
    ],
    env,
  );
  assert.equal(result.code, 0, `rtr7 image build failed:\n${result.stdout}\n${result.stderr}`);
  // Debian's minisign (scripts/setup.sh installs it) checks it from outside, with rtr7's public key file.
  const checked = await run("minisign", [
    "-V",
    "-m",
    path.join(dir, "manifest.json"),
    "-p",
    path.join(config, "rtr7", "keys", "signing.pub"),
  ]);
  assert.match(checked.stdout, /Signature and comment signature verified/);
  assert.match(checked.stdout, /rtr7-release:g[0-9a-f]{12}\tkind:fleet/);
  const perHost = await libraryBuild();
  const manifest = parseManifest(JSON.parse(await readFile(path.join(dir, "manifest.json"), "utf8")));
  assert.equal(manifest.anyUnit, true);
  assert.equal(manifest.hostname, undefined);
  assert.match(manifest.version ?? "", /^g[0-9a-f]{12}$/);
  assert.notEqual(manifest.version, perHost.version, "a fleet release digests like a per-host build");
  const buildInfo = JSON.parse(
    await unsquashfsCat(path.join(dir, "root.img"), "etc/rtr7/build.json"),
  ) as Record<string, unknown>;
  assert.deepEqual(Object.keys(buildInfo), [
    "anyUnit",
    "version",
    "kernelRelease",
    "nodeVersion",
    "builderVersion",
  ]);
  assert.equal(buildInfo.anyUnit, true);
  assert.equal(buildInfo.version, manifest.version);
  const bootConfig = (await run("mtype", ["-i", path.join(dir, "boot.img"), "::syslinux.cfg"])).stdout;
  assert.match(bootConfig, new RegExp(`root=PARTUUID=${partitionUuid(0, 2)} .*rtr7\\.slot=a`));
  assert.match(bootConfig, new RegExp(`root=PARTUUID=${partitionUuid(0, 3)} .*rtr7\\.slot=b`));
  assert.equal(Buffer.byteLength(bootConfig), 512);
  // Everything but the hostname is the per-host build's: the same mbr.img.
  assert.equal(await sha256(path.join(dir, "mbr.img")), await sha256(path.join(perHost.dir, "mbr.img")));
});

test("an --add of a missing source fails with RTR7_ERR_IMAGE_BUILD and writes nothing", async (t) => {
  if (!(await ready(t))) return;
  const input = await inputs();
  const out = path.join(input.work, "missing-add");
  const missing = path.join(input.work, "no-such-file");
  await assert.rejects(
    buildUnitImages({
      outDir: out,
      hostname,
      kernel: input.kernel,
      add: [{ source: missing, destination: "/etc/x" }],
      routerEntry: input.routerEntry,
    }),
    (error: unknown) => isRtr7Error(error, "RTR7_ERR_IMAGE_BUILD") && error.message.includes(missing),
  );
  const left = await readdir(out).catch(() => []);
  assert.deepEqual(left, [], `the failed build left ${left.join(", ")}`);

  const cli = await runCli([
    "image",
    "build",
    `--out=${out}`,
    `--hostname=${hostname}`,
    `--add=${missing}:/etc/x`,
    "--json",
  ]);
  assert.equal(cli.code, 1);
  const error = jsonEvents(cli.stdout).find((line) => line.event === "error");
  assert.equal(error?.code, "RTR7_ERR_IMAGE_BUILD");
  assert.deepEqual(await readdir(out).catch(() => []), []);
});

test("a build that fails after root.img was made leaves the previous images untouched", async (t) => {
  if (!(await ready(t))) return;
  const input = await inputs();
  const previous = await libraryBuild();
  const out = path.join(input.work, "late-failure");
  await mkdir(out);
  const before = new Map<string, string>();
  for (const name of [...images, "manifest.json"]) {
    await copyFile(path.join(previous.dir, name), path.join(out, name));
    before.set(name, await sha256(path.join(out, name)));
  }
  // A "kernel" larger than the boot partition: found, hashed, then refused by mcopy.
  const release = path.basename(input.kernel).slice("vmlinuz-".length);
  const tooLarge = path.join(input.work, `vmlinuz-${release}`);
  await writeFile(tooLarge, "");
  await truncate(tooLarge, bootBytes + 1);
  await assert.rejects(
    buildUnitImages({ outDir: out, hostname, kernel: tooLarge, routerEntry: input.routerEntry }),
    (error: unknown) => isRtr7Error(error, "RTR7_ERR_IMAGE_BUILD") && /vmlinuz/.test(error.message),
  );
  assert.deepEqual((await readdir(out)).sort(), [...before.keys()].sort());
  for (const [name, hash] of before)
    assert.equal(await sha256(path.join(out, name)), hash, `${name} changed`);
});
