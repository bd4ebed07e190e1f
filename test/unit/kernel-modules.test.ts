// Kernel modules for the recovery initramfs: modules.dep and friends parsed
// from small fixtures (load order, `-`/`_`, built-in, missing, compressed,
// soft dependencies through aliases), then the real tables of this machine's
// kernel for e1000, virtio_blk and ext4; and the kernel release read from a
// bzImage header.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { isRtr7Error } from "../../lib/errors.js";
import {
  moduleIndex,
  moduleName,
  parseModulesAlias,
  parseModulesSoftdep,
  readModuleIndex,
  recoveryModuleClosure,
  recoveryModules,
  resolveModules,
  type KernelModule,
} from "../../updates/image/initramfs/kernel-modules.js";
import {
  kernelRelease,
  releaseFromBzImageHeader,
  releaseFromFileName,
} from "../../updates/image/initramfs/kernel-release.js";
import { hostKernel } from "../helpers/host-kernel.js";

const fixture = {
  // As depmod writes it: each line lists the whole closure, last-to-load first.
  dep: [
    "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio_ring.ko:",
    "kernel/drivers/net/ethernet/intel/e1000/e1000.ko:",
    "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko",
    "kernel/fs/jbd2/jbd2.ko:",
    "kernel/fs/mbcache.ko:",
    "kernel/lib/crc16.ko:",
    "kernel/crypto/crc32c_generic.ko:",
    "kernel/arch/x86/crypto/crc32c-intel.ko:",
    "kernel/drivers/mmc/host/sdhci-pci.ko: kernel/drivers/mmc/host/sdhci.ko",
    "kernel/drivers/mmc/host/sdhci.ko:",
    "kernel/fs/squashfs/squashfs.ko.xz:",
    "kernel/drivers/net/phy/realtek.ko:",
    "kernel/drivers/net/ethernet/realtek/r8169.ko:",
    "",
  ].join("\n"),
  builtin: "kernel/fs/nls/nls_base.ko\nkernel/drivers/scsi/sd_mod.ko\n",
  alias: [
    "# Aliases extracted from modules themselves.",
    "alias crypto-crc32c crc32c_intel",
    "alias crypto-crc32c crc32c_generic",
    "alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000",
    "",
  ].join("\n"),
  softdep: [
    "# Soft dependencies extracted from modules themselves.",
    "softdep ext4 pre: crypto-crc32c",
    "softdep jbd2 pre: crypto-crc32c",
    "softdep r8169 pre: realtek",
    "softdep cifs gcm",
    "softdep nothere pre: no-such-thing",
    "",
  ].join("\n"),
};

const paths = (modules: KernelModule[]): string[] => modules.map((module) => module.path);

/** Every module comes after everything modules.dep says it needs, and only once. */
function assertLoadOrder(modules: KernelModule[]): void {
  const seen = new Set<string>();
  for (const module of modules) {
    assert.ok(!seen.has(module.path), `${module.path} listed twice`);
    for (const dependency of module.dependencies) {
      assert.ok(seen.has(dependency), `${dependency} must load before ${module.path}`);
    }
    seen.add(module.path);
  }
}

test("module names treat - and _ alike and drop .ko and compression suffixes", () => {
  assert.equal(moduleName("kernel/drivers/mmc/host/sdhci-pci.ko"), "sdhci_pci");
  assert.equal(moduleName("crc32c-intel"), "crc32c_intel");
  assert.equal(moduleName("kernel/fs/squashfs/squashfs.ko.xz"), "squashfs");
  assert.equal(moduleName("kernel/fs/x.ko.zst"), "x");
});

test("dependencies load first, each module once, in modprobe's order", () => {
  const index = moduleIndex(fixture);
  const { load, skipped } = resolveModules(index, ["virtio_blk", "e1000", "virtio-blk", "ext4"]);
  assert.deepEqual(paths(load), [
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
    // ext4's soft dependency (crypto-crc32c through modules.alias), generic
    // implementation only, ahead of its hard dependencies.
    "kernel/crypto/crc32c_generic.ko",
    "kernel/fs/jbd2/jbd2.ko",
    "kernel/fs/mbcache.ko",
    "kernel/lib/crc16.ko",
    "kernel/fs/ext4/ext4.ko",
  ]);
  assertLoadOrder(load);
  assert.deepEqual(skipped, []);
});

test("names with - and _ find the same file", () => {
  const index = moduleIndex(fixture);
  for (const wanted of ["sdhci_pci", "sdhci-pci"]) {
    assert.deepEqual(paths(resolveModules(index, [wanted]).load), [
      "kernel/drivers/mmc/host/sdhci.ko",
      "kernel/drivers/mmc/host/sdhci-pci.ko",
    ]);
  }
  assert.deepEqual(paths(resolveModules(index, ["crc32c_intel"]).load), [
    "kernel/arch/x86/crypto/crc32c-intel.ko",
  ]);
});

test("a pre soft dependency naming a module loads before it", () => {
  const index = moduleIndex(fixture);
  assert.deepEqual(paths(resolveModules(index, ["r8169"]).load), [
    "kernel/drivers/net/phy/realtek.ko",
    "kernel/drivers/net/ethernet/realtek/r8169.ko",
  ]);
});

test("built-in and missing optional modules are skipped; a missing required one is an error", () => {
  const index = moduleIndex(fixture);
  const { load, skipped } = resolveModules(index, ["e1000", "sd_mod", "nls-base", "nvme", "igc"], {
    required: ["e1000", "sd_mod"],
  });
  assert.deepEqual(paths(load), ["kernel/drivers/net/ethernet/intel/e1000/e1000.ko"]);
  assert.deepEqual(skipped, [
    { name: "sd_mod", reason: "builtin" },
    { name: "nls_base", reason: "builtin" },
    { name: "nvme", reason: "missing" },
    { name: "igc", reason: "missing" },
  ]);
  assert.throws(
    () => resolveModules(index, ["e1000", "virtio_net"], { required: ["virtio-net"] }),
    (error) => isRtr7Error(error, "RTR7_ERR_KERNEL_MODULES") && /virtio_net/.test(error.message),
  );
});

test("a compressed module is refused: busybox insmod cannot load it", () => {
  const index = moduleIndex(fixture);
  assert.throws(
    () => resolveModules(index, ["e1000", "squashfs"]),
    (error) => isRtr7Error(error, "RTR7_ERR_KERNEL_MODULES") && error.message.includes("squashfs.ko.xz"),
  );
});

test("modules.softdep and modules.alias parse as kmod reads them", () => {
  const softdeps = parseModulesSoftdep("softdep a pre: b c post: d\nsoftdep cifs gcm\nsoftdep a-x post: e\n");
  assert.deepEqual(softdeps.get("a"), { pre: ["b", "c"], post: ["d"] });
  // Names before any pre:/post: belong to neither (kmod ignores them).
  assert.deepEqual(softdeps.get("cifs"), { pre: [], post: [] });
  assert.deepEqual(softdeps.get("a_x"), { pre: [], post: ["e"] });
  const aliases = parseModulesAlias(fixture.alias);
  assert.deepEqual(aliases.get("crypto-crc32c"), ["crc32c_intel", "crc32c_generic"]);
  assert.equal([...aliases.keys()].length, 1, "device aliases with wildcards are left out");
});

test("a post soft dependency loads right after its module", () => {
  const index = moduleIndex({
    dep: "kernel/a.ko: kernel/b.ko\nkernel/b.ko:\nkernel/c.ko:\n",
    softdep: "softdep a post: c\n",
  });
  assert.deepEqual(paths(resolveModules(index, ["a"]).load), ["kernel/b.ko", "kernel/a.ko", "kernel/c.ko"]);
});

test("this machine's kernel: e1000, virtio_blk and ext4 resolve to files in load order", async (t) => {
  const host = hostKernel();
  if (host.missing !== undefined) return t.skip(host.missing);
  const index = await readModuleIndex(host.modulesDir);
  const { load } = resolveModules(index, ["e1000", "virtio_blk", "ext4"], {
    required: recoveryModules.required,
  });
  assertLoadOrder(load);
  const names = load.map((module) => module.name);
  for (const name of ["e1000", "virtio_blk", "virtio", "virtio_ring", "ext4", "jbd2", "mbcache", "crc16"]) {
    assert.ok(names.includes(name), `${name} in ${names.join(" ")}`);
  }
  // ext4 mounts a metadata_csum file system only with a crc32c implementation.
  assert.ok(names.indexOf("crc32c_generic") < names.indexOf("ext4"), names.join(" "));
  assert.ok(!names.includes("crc32c_intel"), "only the generic crc32c, which loads on every CPU");
  for (const module of load) assert.ok(existsSync(path.join(host.modulesDir, module.path)), module.path);
});

test("this machine's kernel: the whole recovery set resolves", async (t) => {
  const host = hostKernel();
  if (host.missing !== undefined) return t.skip(host.missing);
  const { load, skipped } = await recoveryModuleClosure(host.modulesDir);
  assertLoadOrder(load);
  const names = new Set(load.map((module) => module.name));
  for (const name of recoveryModules.required) assert.ok(names.has(name), name);
  for (const name of recoveryModules.optional) {
    assert.ok(names.has(name) || skipped.some((skip) => skip.name === name), `${name} loaded or skipped`);
  }
});

test("the kernel release comes from the bzImage header, else from the file name", async (t) => {
  assert.equal(releaseFromFileName("/boot/vmlinuz-6.1.0-56-amd64"), "6.1.0-56-amd64");
  assert.equal(releaseFromFileName("/srv/vmlinuz"), undefined);
  const header = Buffer.alloc(0x600);
  header.write("HdrS", 0x202, "latin1");
  header.writeUInt16LE(0x300, 0x20e);
  header.write("6.6.7-router7 (builder@host) #1 SMP\0", 0x500, "latin1");
  assert.equal(releaseFromBzImageHeader(header), "6.6.7-router7");
  assert.equal(releaseFromBzImageHeader(Buffer.alloc(0x600)), undefined);
  await assert.rejects(kernelRelease("/nonexistent/vmlinuz-1"), (error) =>
    isRtr7Error(error, "RTR7_ERR_FILE_MISSING"),
  );

  const host = hostKernel();
  if (host.missing !== undefined) return t.skip(host.missing);
  assert.equal(await kernelRelease(host.kernel), host.release);
});
