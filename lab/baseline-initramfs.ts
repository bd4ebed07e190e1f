// The "peers baseline" unit of the recovery benchmark: what a user could do
// with stock tools instead of rtr7 — a busybox initramfs whose shell script
// loads the virtio disk and e1000 drivers, gets an address with udhcpc,
// writes the partition table (bytes precomputed here) and the MBR boot code
// with dd, then streams boot.img and root.img from an HTTP server straight
// to their partitions with `wget | dd`, and powers off. Nothing is verified,
// no /perm is made and no backup restored: it is the floor to compare with.
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { cpioArchive, type CpioEntry } from "../updates/image/initramfs/cpio.js";
import { busyboxInitPreamble } from "./smoke-initramfs.js";

/** Load order: dependencies first (modules.dep of Debian 12's kernel). */
const modules = [
  "kernel/drivers/virtio/virtio_ring.ko",
  "kernel/drivers/virtio/virtio.ko",
  "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
  "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
  "kernel/drivers/virtio/virtio_pci.ko",
  "kernel/drivers/block/virtio_blk.ko",
  "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
];

/** Lines the script prints on the console, for the benchmark's breakdown. */
export const baselineMarks = {
  init: "baseline: init",
  network: "baseline: network up",
  partition: "baseline: partition table",
  boot: "baseline: writing boot.img",
  root: "baseline: writing root.img",
  done: "baseline: done",
  failed: "baseline: FAILED",
} as const;

function initScript(offsets: { bootMiB: number; rootMiB: number; disk: string }): string {
  return `#!/bin/busybox sh
${busyboxInitPreamble}echo "${baselineMarks.init}"
fail() { echo "${baselineMarks.failed}: $1"; sleep 1; poweroff -f; }
for module in ${modules.map((module) => path.basename(module, ".ko")).join(" ")}; do
  insmod /lib/modules/$module.ko || fail "insmod $module"
done
arg() { for word in $(cat /proc/cmdline); do case "$word" in "$1="*) echo "\${word#*=}";; esac; done; }
base="http://$(arg bench.server):$(arg bench.port)"
ip link set eth0 up
udhcpc -i eth0 -s /udhcpc.script -n -q -t 20 -T 1 || fail dhcp
for i in $(seq 50); do [ -b ${offsets.disk} ] && break; sleep 0.2; done
echo "${baselineMarks.network}"
wget -q -O /tmp/mbr.img "$base/mbr.img" || fail "wget mbr.img"
dd if=/tmp/mbr.img of=${offsets.disk} bs=440 count=1 conv=notrunc 2>/dev/null || fail "dd mbr"
dd if=/partition-table.bin of=${offsets.disk} bs=1 seek=440 count=72 conv=notrunc 2>/dev/null || fail "dd table"
blockdev --rereadpt ${offsets.disk} || fail rereadpt
echo "${baselineMarks.partition}"
echo "${baselineMarks.boot}"
wget -q -O - "$base/boot.img" | dd of=${offsets.disk} bs=1M seek=${offsets.bootMiB} conv=fsync 2>/dev/null || fail "boot.img"
echo "${baselineMarks.root}"
wget -q -O - "$base/root.img" | dd of=${offsets.disk} bs=1M seek=${offsets.rootMiB} conv=fsync 2>/dev/null || fail "root.img"
echo "${baselineMarks.done}"
poweroff -f
`;
}

const udhcpcScript = `#!/bin/sh
case "$1" in
  bound|renew) ifconfig "$interface" "$ip" netmask "\${subnet:-255.255.255.0}" up ;;
esac
`;

export interface BaselineInitramfsOptions {
  /** Where to write the gzip-compressed cpio archive. */
  out: string;
  /** /lib/modules/<version> of the kernel the unit boots. */
  modulesDir: string;
  /** Bytes 440..511 of sector 0 (disk id, four partition entries, 0x55aa). */
  partitionTable: Buffer;
  bootOffsetMiB: number;
  rootOffsetMiB: number;
  /** The unit's disk; default /dev/vda (virtio). */
  disk?: string;
  busybox?: string;
}

export async function buildBaselineInitramfs(options: BaselineInitramfsOptions): Promise<string> {
  const moduleEntries = await Promise.all(
    modules.map(async (module): Promise<CpioEntry> => ({
      kind: "file",
      path: `lib/modules/${path.basename(module)}`,
      data: await readFile(path.join(options.modulesDir, module)),
    })),
  );
  const script = initScript({
    bootMiB: options.bootOffsetMiB,
    rootMiB: options.rootOffsetMiB,
    disk: options.disk ?? "/dev/vda",
  });
  const entries: CpioEntry[] = [
    ...["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"].map((directory): CpioEntry => ({
      kind: "directory",
      path: directory,
    })),
    { kind: "file", path: "bin/busybox", mode: 0o755, source: options.busybox ?? "/bin/busybox" },
    { kind: "symlink", path: "bin/sh", target: "busybox" },
    ...moduleEntries,
    { kind: "file", path: "init", mode: 0o755, data: Buffer.from(script) },
    { kind: "file", path: "udhcpc.script", mode: 0o755, data: Buffer.from(udhcpcScript) },
    { kind: "file", path: "partition-table.bin", data: options.partitionTable },
  ];
  await pipeline(Readable.from(cpioArchive(entries)), createGzip(), createWriteStream(options.out));
  return options.out;
}
