// The unit's operating system as recovery-init uses it, through busybox (the
// initramfs has no util-linux): mounting, loading modules, bringing the NIC
// up with DHCP, dropping caches, making /perm's file system, rebooting. One
// interface, so the recovery steps can run against a stand-in in tests.
import { execFile } from "node:child_process";
import { access, readFile, readdir, writeFile, chmod, mkdir } from "node:fs/promises";
import { promisify } from "node:util";
import { permMke2fsArguments } from "../lib/wire/perm-filesystem.js";

const execFileAsync = promisify(execFile);

export interface Lease {
  interfaceName: string;
  mac: string;
  address: string;
  prefixLength: number;
}

export interface UnitSystem {
  mountEssentials(): Promise<void>;
  /** Loads modules in order; returns the ones that failed (with why). */
  loadModules(paths: string[]): Promise<string[]>;
  /** First NIC, up, with a DHCP lease. */
  bringUpNetwork(timeoutMs: number): Promise<Lease>;
  /** Makes the kernel reread a disk's partition table. */
  rereadPartitions(disk: string): Promise<void>;
  dropCaches(): Promise<void>;
  /** `options`: mount's -o, e.g. "ro,noload" to read a file system without writing to it. */
  mount(device: string, directory: string, type: string, options?: string): Promise<void>;
  unmount(directory: string): Promise<void>;
  makeExt4(device: string, label: string): Promise<void>;
  sync(): Promise<void>;
  reboot(): Promise<void>;
  cmdline(): Promise<string>;
}

const busyboxPath = "/bin/busybox";

async function busybox(applet: string, args: string[], timeoutMs = 60_000): Promise<string> {
  try {
    const { stdout } = await execFileAsync(busyboxPath, [applet, ...args], {
      timeout: timeoutMs,
      encoding: "utf8",
    });
    return stdout;
  } catch (error) {
    const failed = error as { stderr?: string; message: string };
    throw new Error(`${applet} ${args.join(" ")}: ${failed.stderr?.trim() || failed.message}`, {
      cause: error,
    });
  }
}

const dhcpScript = `#!/bin/busybox sh
case "$1" in
  bound|renew)
    /bin/busybox ifconfig "$interface" "$ip" netmask "\${subnet:-255.255.255.0}" up
    echo "$ip \${subnet:-255.255.255.0}" > /tmp/rtr7-lease
    ;;
esac
exit 0
`;

/** True when `directory` is a mount point now (false while /proc itself is not mounted). */
async function isMounted(directory: string): Promise<boolean> {
  const mountinfo = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  return mountinfo.split("\n").some((line) => line.split(" ")[4] === directory);
}

/** True when the kernel has the module of a .ko file (virtio-net.ko → /sys/module/virtio_net). */
async function moduleLoaded(file: string): Promise<boolean> {
  const name = (file.split("/").pop() ?? file).replace(/\.ko(\.(xz|gz|zst))?$/, "").replace(/-/g, "_");
  return access(`/sys/module/${name}`).then(
    () => true,
    () => false,
  );
}

function prefixLength(netmask: string): number {
  return netmask
    .split(".")
    .map((part) => Number(part).toString(2).replaceAll("0", "").length)
    .reduce((sum, bits) => sum + bits, 0);
}

export const busyboxSystem: UnitSystem = {
  async mountEssentials() {
    for (const [type, directory] of [
      ["proc", "/proc"],
      ["sysfs", "/sys"],
      ["devtmpfs", "/dev"],
      ["tmpfs", "/tmp"],
    ] as const) {
      await mkdir(directory, { recursive: true });
      // devtmpfs may already be mounted by the kernel (CONFIG_DEVTMPFS_MOUNT).
      if (await isMounted(directory)) continue;
      await busybox("mount", ["-t", type, type, directory]).catch(async (error: unknown) => {
        if (!(await isMounted(directory))) throw error;
      });
    }
  },

  async loadModules(paths) {
    const failed: string[] = [];
    for (const path of paths) {
      await busybox("insmod", [path]).catch(async (error: Error) => {
        // Already loaded (or built in): not a failure, whatever insmod said.
        if (!(await moduleLoaded(path))) failed.push(`${path}: ${error.message}`);
      });
    }
    return failed;
  },

  async bringUpNetwork(timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let nic: string | undefined;
    while (nic === undefined && Date.now() < deadline) {
      nic = (await readdir("/sys/class/net")).sort().find((name) => name !== "lo" && !name.startsWith("sit"));
      if (nic === undefined) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    if (nic === undefined) throw new Error(`no network interface appeared within ${timeoutMs / 1000} s`);
    await busybox("ip", ["link", "set", nic, "up"]);
    await writeFile("/tmp/rtr7-udhcpc", dhcpScript);
    await chmod("/tmp/rtr7-udhcpc", 0o755);
    const tries = Math.max(3, Math.ceil((deadline - Date.now()) / 2000));
    await busybox(
      "udhcpc",
      ["-i", nic, "-n", "-q", "-f", "-t", String(tries), "-T", "2", "-s", "/tmp/rtr7-udhcpc"],
      timeoutMs + 5000,
    );
    const [address = "", netmask = "255.255.255.0"] = (await readFile("/tmp/rtr7-lease", "utf8"))
      .trim()
      .split(" ");
    const mac = (await readFile(`/sys/class/net/${nic}/address`, "utf8")).trim();
    return { interfaceName: nic, mac, address, prefixLength: prefixLength(netmask) };
  },

  async rereadPartitions(disk) {
    await busybox("blockdev", ["--rereadpt", disk]);
  },

  async dropCaches() {
    await busybox("sync", []);
    await writeFile("/proc/sys/vm/drop_caches", "3");
  },

  async mount(device, directory, type, options) {
    await mkdir(directory, { recursive: true });
    await busybox("mount", [
      "-t",
      type,
      ...(options === undefined ? [] : ["-o", options]),
      device,
      directory,
    ]);
  },

  async unmount(directory) {
    await busybox("umount", [directory]);
  },

  async makeExt4(device, label) {
    try {
      // ext4 with its journal, which the unit's state relies on (lib/wire/perm-filesystem.ts).
      await execFileAsync("/sbin/mke2fs", permMke2fsArguments(device, label), { timeout: 300_000 });
    } catch (error) {
      const failed = error as { stderr?: string; message: string };
      throw new Error(`mke2fs ${device}: ${failed.stderr?.trim() || failed.message}`, { cause: error });
    }
  },

  async sync() {
    await busybox("sync", []);
  },

  async reboot() {
    await busybox("reboot", ["-f"]);
  },

  cmdline: () => readFile("/proc/cmdline", "utf8"),
};
