// The boot initrd (initrd.img on boot.img): Debian's kernel has virtio_blk,
// ata and squashfs as modules, so it cannot mount root=PARTUUID=... by
// itself. This tiny initramfs holds static busybox, the disk and file system
// modules (the recovery closure) and /init, a shell script that loads them,
// finds the disk whose MBR identifier the kernel command line names, mounts
// the root slot's squashfs read-only and switches to /rtr7/init on it. Any
// failure prints one `rtr7-boot: ...` line and exits, which panics the kernel;
// panic=10 then reboots the unit into its default (committed) slot.
import { createWriteStream } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { cpioArchive, type CpioEntry } from "./initramfs/cpio.js";
import type { ResolvedModules } from "./initramfs/kernel-modules.js";
import { InitramfsTree } from "./initramfs/tree.js";
import { addModules, modulesListPath } from "./modules.js";
import { rootImagePaths } from "./root-tree.js";

/** How long /init waits for the root disk to appear. */
export const rootWaitSeconds = 20;
const pollsPerSecond = 4;

/** The busybox applets /init calls, as symlinks in /bin. */
const applets = [
  "sh",
  "mount",
  "umount",
  "insmod",
  "mkdir",
  "cat",
  "dd",
  "od",
  "tr",
  "grep",
  "sleep",
  "switch_root",
];

/** The text of /init. */
export function bootInitScript(): string {
  return `#!/bin/sh
# rtr7 boot initrd: load the disk and file system drivers listed in
# ${modulesListPath}, find the root slot named by root=PARTUUID=<disk id>-<nn>
# (the disk id is the MBR identifier, 4 bytes little-endian at offset 440),
# mount its squashfs read-only and switch to ${rootImagePaths.init} on it.
export PATH=/bin

say() { echo "rtr7-boot: $*"; }
fail() {
  say "$*"
  say "giving up: the kernel panics now (panic=10 reboots the unit into its default slot)"
  sleep 1
  exit 1
}

mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc || fail "mount -t proc on /proc failed"
mount -t sysfs sysfs /sys || fail "mount -t sysfs on /sys failed"
mount -t devtmpfs devtmpfs /dev || fail "mount -t devtmpfs on /dev failed"
say "loading $(grep -c . ${modulesListPath}) kernel modules"

while read -r module; do
  [ -n "$module" ] || continue
  if ! said=$(insmod "$module" 2>&1); then
    case "$said" in
      *"File exists"*) ;;
      *) say "warning: insmod $module failed: $said" ;;
    esac
  fi
done < ${modulesListPath}

cmdline=$(cat /proc/cmdline)
partuuid=""
for word in $cmdline; do
  case "$word" in
    root=PARTUUID=*) partuuid="\${word#root=PARTUUID=}" ;;
  esac
done
[ -n "$partuuid" ] || fail "no root=PARTUUID=<disk id>-<partition> on the kernel command line: $cmdline"
want_id=$(echo "\${partuuid%-*}" | tr 'A-F' 'a-f')
part_hex="\${partuuid##*-}"
case "$want_id" in
  [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) ;;
  *) fail "root=PARTUUID=$partuuid: want 8 hex digits, a dash and a 2-digit partition number (1a2b3c4d-02)" ;;
esac
case "$part_hex" in
  [0-9a-fA-F][0-9a-fA-F]) part=$((0x$part_hex)) ;;
  *) fail "root=PARTUUID=$partuuid: want 8 hex digits, a dash and a 2-digit partition number (1a2b3c4d-02)" ;;
esac
[ "$part" -ge 1 ] || fail "root=PARTUUID=$partuuid: partition 0 does not exist"

# The MBR disk identifier of /dev/$1, as 8 lowercase hex digits (empty if unreadable).
disk_id() {
  dd if="/dev/$1" bs=512 count=1 2>/dev/null | od -A n -t x4 -j 440 -N 4 | tr -d ' \\n'
}

root_device=""
polls=0
while :; do
  seen=""
  for dir in /sys/class/block/*; do
    [ -e "$dir" ] || continue
    name="\${dir##*/}"
    [ -e "$dir/partition" ] && continue
    id=$(disk_id "$name")
    seen="$seen $name(id \${id:-unreadable})"
    [ "$id" = "$want_id" ] || continue
    case "$name" in
      *[0-9]) candidate="/dev/\${name}p$part" ;;
      *) candidate="/dev/$name$part" ;;
    esac
    if [ -b "$candidate" ]; then
      root_device="$candidate"
      break
    fi
    seen="$seen[no $candidate]"
  done
  [ -n "$root_device" ] && break
  polls=$((polls + 1))
  if [ "$polls" -ge ${rootWaitSeconds * pollsPerSecond} ]; then
    fail "no disk with MBR id $want_id and a partition $part after ${rootWaitSeconds} s; whole disks seen:\${seen:- none}"
  fi
  sleep ${1 / pollsPerSecond}
done
say "root is $root_device (partition $part of the disk with id $want_id)"

mount -t squashfs -o ro "$root_device" /newroot ||
  fail "mount -t squashfs -o ro $root_device /newroot failed (no root image in that slot?)"
[ -x /newroot${rootImagePaths.init} ] || fail "$root_device has no ${rootImagePaths.init}: not an rtr7 root image"
[ -d /newroot/dev ] || fail "$root_device has no /dev to move /dev to"
mount -o move /dev /newroot/dev || fail "mount -o move /dev /newroot/dev failed"
umount /sys
umount /proc
echo "rtr7-boot: switching to ${rootImagePaths.init} on $root_device"
exec switch_root /newroot ${rootImagePaths.init}
`;
}

/** The initrd's entries: /init, busybox and its applet links, the modules and their list. */
export function bootInitrdEntries(inputs: {
  busybox: string;
  modules: ResolvedModules;
  modulesDir: string;
  kernelRelease: string;
}): CpioEntry[] {
  const tree = new InitramfsTree();
  for (const directory of ["/proc", "/sys", "/dev", "/newroot", "/etc"]) tree.directory(directory);
  tree.data("/init", Buffer.from(bootInitScript()), 0o755);
  tree.hostFile("/bin/busybox", inputs.busybox, 0o755);
  for (const applet of applets) tree.symlink(`/bin/${applet}`, "busybox");
  addModules(tree, inputs.modules, inputs.modulesDir, inputs.kernelRelease);
  return tree.entries();
}

/** Writes the entries as a gzip'd newc cpio (node's gzip: no time stamp, same bytes every time). */
export async function writeBootInitrd(entries: CpioEntry[], output: string): Promise<void> {
  await pipeline(Readable.from(cpioArchive(entries)), createGzip(), createWriteStream(output));
}
