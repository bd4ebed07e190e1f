// A minimal recovery initramfs that plays the unit in issue 2's end-to-end
// tests and in the demo: busybox, the e1000 driver, and a shell script as
// /rtr7-recovery-init that gets an address by DHCP, reads the server and the
// session token from the kernel command line, fetches the manifest and the
// MBR image, and reports progress and success (or failure) the way
// recovery-init does. It proves the whole PXE chain without writing a disk.
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { cpioArchive, type CpioEntry } from "../updates/image/initramfs/cpio.js";

/** The start of a busybox init script: applets installed, proc, sys and dev mounted. */
export const busyboxInitPreamble = `/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
`;

const initScript = `#!/bin/busybox sh
${busyboxInitPreamble}arg() { for word in $(cat /proc/cmdline); do case "$word" in "$1="*) echo "\${word#*=}";; esac; done; }
server=$(arg rtr7.server); port=$(arg rtr7.port); token=$(arg rtr7.token)
base="http://$server:$port"
echo "rtr7-smoke: recovery server $base"
report() {
  wget -q -O /dev/null --header "Authorization: Bearer $token" --header "Content-Type: application/json" \\
    --post-data "$2" "$base/$1"
}
fail() {
  echo "rtr7-smoke: FAILED at $1: $2"
  report failure "{\\"step\\":\\"$1\\",\\"message\\":\\"$2\\"}"
  poweroff -f
}
insmod /lib/modules/e1000.ko || fail modules "cannot load e1000"
ip link set eth0 up
udhcpc -i eth0 -s /udhcpc.script -n -q -t 20 -T 1 || fail dhcp "no DHCP answer"
report progress '{"step":"dhcp","message":"smoke unit has an address"}' || fail report "progress report refused"
wget -q -O /tmp/manifest.json "$base/manifest.json" || fail fetch "cannot fetch manifest.json"
wget -q -O /tmp/mbr.img "$base/mbr.img" || fail fetch "cannot fetch mbr.img"
report success '{"message":"smoke unit fetched the manifest and mbr.img"}' || fail report "success report refused"
echo "rtr7-smoke: reported success"
poweroff -f
`;

const udhcpcScript = `#!/bin/sh
case "$1" in
  bound|renew)
    ifconfig "$interface" "$ip" netmask "\${subnet:-255.255.255.0}" up
    echo "rtr7-smoke: got $ip from \${serverid:-?}"
    ;;
esac
`;

export interface SmokeInitramfsOptions {
  /** Where to write the gzip-compressed cpio archive. */
  out: string;
  /** /lib/modules/<version> of the kernel the unit boots. */
  modulesDir: string;
  busybox?: string;
}

export async function buildSmokeInitramfs(options: SmokeInitramfsOptions): Promise<string> {
  const e1000 = await readFile(`${options.modulesDir}/kernel/drivers/net/ethernet/intel/e1000/e1000.ko`);
  const entries: CpioEntry[] = [
    ...["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"].map((path): CpioEntry => ({
      kind: "directory",
      path,
    })),
    { kind: "file", path: "bin/busybox", mode: 0o755, source: options.busybox ?? "/bin/busybox" },
    { kind: "symlink", path: "bin/sh", target: "busybox" },
    { kind: "file", path: "lib/modules/e1000.ko", data: e1000 },
    { kind: "file", path: "rtr7-recovery-init", mode: 0o755, data: Buffer.from(initScript) },
    { kind: "file", path: "udhcpc.script", mode: 0o755, data: Buffer.from(udhcpcScript) },
  ];
  await pipeline(Readable.from(cpioArchive(entries)), createGzip(), createWriteStream(options.out));
  return options.out;
}

/** /lib/modules/<version> for a /boot/vmlinuz-<version> kernel. */
export function modulesDirFor(kernelPath: string): string {
  const version = /vmlinuz-(.+)$/.exec(kernelPath)?.[1];
  if (!version) throw new Error(`cannot tell the kernel version from ${kernelPath}`);
  return `/lib/modules/${version}`;
}
