// End to end under a real kernel: this machine's kernel boots (QEMU, no
// network) the recovery initramfs built around a stand-in recovery-init, and
// the stand-in, run by /bin/node through its #! line as rdinit, loads every
// module in /etc/rtr7/modules with busybox insmod in the listed order, then
// makes an ext4 file system on the virtio disk with the initramfs's mke2fs
// and mounts it (which needs the crc32c module that only modules.softdep
// names). It proves the load order and the soft dependencies, not just the
// archive's contents.
import { test } from "node:test";
import assert from "node:assert/strict";
import { truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { haveTool, run } from "../../lab/processes.js";
import { buildRecoveryInitramfs } from "../../updates/image/initramfs/builder.js";
import { hostKernel } from "../helpers/host-kernel.js";
import { scratchDir } from "../helpers/scratch.js";

const standIn = `import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
// stdio "pipe", not "ignore": libuv opens /dev/null for an ignored stream,
// and /dev is empty until devtmpfs is mounted.
const busybox = (...args) => execFileSync("/bin/busybox", args, { stdio: "pipe" }).toString();
await Promise.resolve();
console.log("STANDIN node " + process.versions.node);
busybox("mount", "-t", "proc", "proc", "/proc");
busybox("mount", "-t", "sysfs", "sysfs", "/sys");
busybox("mount", "-t", "devtmpfs", "devtmpfs", "/dev");
const modules = readFileSync("/etc/rtr7/modules", "utf8").split("\\n").filter(Boolean);
for (const file of modules) {
  try {
    busybox("insmod", file);
  } catch (error) {
    console.log("STANDIN insmod failed", file, String(error.stderr).trim());
  }
}
console.log("STANDIN loaded " + modules.length);
try {
  execFileSync("/sbin/mke2fs", ["-q", "-F", "-t", "ext4", "/dev/vda"], { stdio: "pipe" });
  busybox("mount", "-t", "ext4", "/dev/vda", "/mnt");
  console.log("STANDIN ext4 mounted");
} catch (error) {
  console.log("STANDIN ext4 failed", String(error.stderr).trim());
}
busybox("poweroff", "-f");
`;

test("the initramfs boots: node runs the bundled init, every module loads in order, ext4 mounts", async (t) => {
  const host = hostKernel();
  if (host.missing !== undefined) return t.skip(host.missing);
  for (const tool of ["qemu-system-x86_64", "busybox", "mke2fs", "cpio"]) {
    if (!(await haveTool(tool))) return t.skip(`needs ${tool}: run scripts/setup.sh`);
  }
  const work = await scratchDir(t, "initramfs-boot");
  const entry = path.join(work, "main.mjs");
  await writeFile(entry, standIn);
  const initramfs = await buildRecoveryInitramfs({
    kernel: host.kernel,
    entry,
    cacheDir: path.join(work, "cache"),
  });
  const disk = path.join(work, "disk.img");
  await writeFile(disk, "");
  await truncate(disk, 64 * 1024 * 1024);
  // Software emulation (see LAB.md); -no-reboot turns the poweroff into an exit.
  const { stdout } = await run(
    "qemu-system-x86_64",
    [
      ...["-m", "1024", "-nographic", "-monitor", "none", "-no-reboot", "-nic", "none"],
      ...["-kernel", host.kernel, "-initrd", initramfs.path],
      ...["-append", "rdinit=/rtr7-recovery-init console=ttyS0 panic=-1 quiet"],
      ...["-drive", `file=${disk},format=raw,if=virtio`],
    ],
    { timeoutMs: 300_000 },
  );
  const output = stdout.replace(/\r/g, "");
  assert.match(output, new RegExp(`STANDIN node ${process.versions.node.replace(/\./g, "\\.")}`), output);
  assert.doesNotMatch(output, /STANDIN insmod failed/, output);
  assert.match(output, /STANDIN loaded \d+/, output);
  assert.match(output, /STANDIN ext4 mounted/, output);
});
