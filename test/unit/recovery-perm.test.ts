// /perm during a recovery: a partition whose ext4 does not mount is never
// formatted; only one with no file system at all gets mke2fs; interfaces.json
// is written only when absent.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, truncate, writeFile } from "node:fs/promises";
import { spawnSync } from "node:child_process";
import { mountPerm, writeInterfacesJson } from "../../recovery-init/perm.js";
import type { UnitSystem } from "../../recovery-init/system.js";
import { scratchDir } from "../helpers/scratch.js";

/** A unit whose mount always fails (as with a damaged journal or a missing module), recording calls. */
function failingMountSystem(calls: string[]): UnitSystem {
  const refuse = (): Promise<never> => Promise.reject(new Error("not used here"));
  return {
    mount: (device) => {
      calls.push(`mount ${device}`);
      return Promise.reject(new Error("mount: wrong fs type, bad superblock"));
    },
    makeExt4: (device) => {
      calls.push(`mke2fs ${device}`);
      return Promise.resolve();
    },
    mountEssentials: refuse,
    loadModules: refuse,
    bringUpNetwork: refuse,
    rereadPartitions: refuse,
    dropCaches: refuse,
    unmount: refuse,
    sync: refuse,
    reboot: refuse,
    cmdline: refuse,
  };
}

test("an ext4 /perm that does not mount is refused, never formatted", async (t) => {
  if (spawnSync("mke2fs", ["-V"]).status !== 0) return t.skip("needs mke2fs: run scripts/setup.sh");
  const dir = await scratchDir(t, "perm");
  const partition = `${dir}/perm.img`;
  await writeFile(partition, "");
  await truncate(partition, 16 * 1024 * 1024);
  assert.equal(spawnSync("mke2fs", ["-q", "-F", "-t", "ext4", partition]).status, 0);
  const calls: string[] = [];
  await assert.rejects(
    mountPerm(failingMountSystem(calls), partition, `${dir}/mnt`, () => undefined),
    /holds an ext4 file system that does not mount; not formatting it/,
  );
  assert.deepEqual(calls, [`mount ${partition}`]);
});

test("a /perm partition with no file system gets one", async (t) => {
  const dir = await scratchDir(t, "perm-blank");
  const partition = `${dir}/perm.img`;
  await writeFile(partition, Buffer.alloc(64 * 1024));
  const calls: string[] = [];
  // The stand-in's mount keeps failing, so the second mount after mke2fs fails too.
  await assert.rejects(mountPerm(failingMountSystem(calls), partition, `${dir}/mnt`, () => undefined));
  assert.deepEqual(calls, [`mount ${partition}`, `mke2fs ${partition}`, `mount ${partition}`]);
});

test("interfaces.json is written in router7's format when absent, and left alone when present", async (t) => {
  const dir = await scratchDir(t, "interfaces");
  const lease = { interfaceName: "eth0", mac: "52:54:00:12:34:56", address: "10.0.0.1", prefixLength: 24 };
  await writeInterfacesJson(dir, lease, () => undefined);
  assert.deepEqual(JSON.parse(await readFile(`${dir}/interfaces.json`, "utf8")), {
    interfaces: [{ hardware_addr: "52:54:00:12:34:56", name: "lan0", addr: "10.0.0.1/24" }],
  });
  await writeFile(`${dir}/interfaces.json`, '{"interfaces":[]}');
  await writeInterfacesJson(dir, lease, () => undefined);
  assert.equal(await readFile(`${dir}/interfaces.json`, "utf8"), '{"interfaces":[]}');
});
