// Chooses the disk recovery-init will erase, from what the kernel lists in
// /sys/block. router7 partitioned /dev/sda or /dev/nvme0n1 blindly; here a
// disk is chosen only when exactly one whole, fixed, writable, large enough
// disk exists, or when the kernel command line names it (rtr7.disk=NAME).
// Anything else stops with an error that lists what was seen and why each
// device was skipped. Nothing is written; the /sys root is a parameter so
// tests can build fake trees.
import { lstat, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error } from "../../lib/errors.js";
import { describeSize } from "../../lib/wire/disk-layout.js";

export interface ChooseDiskOptions {
  /** Default /sys/block. */
  sysBlock?: string;
  /** The value of rtr7.disk= ("sda" or "/dev/sda"), if the kernel command line has one. */
  explicit?: string;
  minimumBytes: number;
}

export interface ChosenDisk {
  /** "/dev/sda". */
  device: string;
  bytes: number;
  /** Logical sector size from queue/logical_block_size; 512 when the kernel does not say. */
  sectorSize: number;
}

/** What /sys/block/<name> says about one block device. */
export interface BlockDeviceFacts {
  name: string;
  /** From `size`, which the kernel always counts in 512-byte units; undefined if unreadable. */
  bytes: number | undefined;
  sectorSize: number;
  removable: boolean;
  readOnly: boolean;
  isPartition: boolean;
  /** Backed by hardware: the kernel links `device` to it. */
  hasDeviceLink: boolean;
}

export interface SeenBlockDevice extends BlockDeviceFacts {
  /** Why the device cannot be chosen without rtr7.disk=; undefined for a candidate. */
  skipped: string | undefined;
}

const skippedPrefixes: [prefix: string, what: string][] = [
  ["loop", "loop device"],
  ["ram", "RAM disk"],
  ["zram", "compressed RAM disk"],
  ["sr", "optical drive"],
  ["fd", "floppy drive"],
  ["md", "software RAID"],
  ["dm-", "device-mapper device"],
];
const tooSmallReason = "too small";

export async function chooseDisk(options: ChooseDiskOptions): Promise<ChosenDisk> {
  const sysBlock = options.sysBlock ?? "/sys/block";
  const { minimumBytes } = options;
  if (options.explicit !== undefined) return explicitDisk(sysBlock, options.explicit, minimumBytes);

  const seen = await surveyBlockDevices(sysBlock, minimumBytes);
  const candidates = seen.filter((device) => device.skipped === undefined);
  const [only] = candidates;
  if (only !== undefined && candidates.length === 1) return chosen(only);
  if (candidates.length > 1)
    throw new Rtr7Error(
      "RTR7_ERR_DISK_AMBIGUOUS",
      `choose the target disk: ${candidates.length} disks qualify: ${candidates.map(sized).join(", ")}`,
      {
        hint:
          "Name the disk to erase with rtr7 recover " +
          candidates.map((device) => `--disk ${device.name}`).join(" or ") +
          ".",
      },
    );
  const list = seen.map((device) => `${device.name} (${device.skipped})`).join("; ") || "nothing";
  throw new Rtr7Error(
    seen.some((device) => device.skipped?.startsWith(tooSmallReason))
      ? "RTR7_ERR_DISK_TOO_SMALL"
      : "RTR7_ERR_DISK_NONE",
    `choose the target disk: no disk in ${sysBlock} qualifies (need a fixed, writable disk of at least ` +
      `${describeSize(minimumBytes)}); seen: ${list}`,
  );
}

/** Every entry of /sys/block, sorted by name, with why it was skipped unless it is a candidate. */
export async function surveyBlockDevices(sysBlock: string, minimumBytes: number): Promise<SeenBlockDevice[]> {
  let names: string[];
  try {
    names = (await readdir(sysBlock)).sort();
  } catch (cause) {
    throw new Rtr7Error("RTR7_ERR_DISK_NONE", `choose the target disk: cannot list ${sysBlock}`, {
      cause,
      hint: "Mount sysfs on /sys before choosing a disk (mount -t sysfs sysfs /sys).",
    });
  }
  const devices = await Promise.all(names.map((name) => readBlockDevice(sysBlock, name)));
  return devices.map((device) => ({ ...device, skipped: skipReason(device, minimumBytes) }));
}

export async function readBlockDevice(sysBlock: string, name: string): Promise<BlockDeviceFacts> {
  const dir = path.join(sysBlock, name);
  const size = await readAttribute(dir, "size");
  const logical = Number(await readAttribute(dir, "queue/logical_block_size"));
  return {
    name,
    bytes: size !== undefined && /^\d+$/.test(size) ? Number(size) * 512 : undefined,
    sectorSize: Number.isInteger(logical) && logical > 0 ? logical : 512,
    removable: (await readAttribute(dir, "removable")) === "1",
    readOnly: (await readAttribute(dir, "ro")) === "1",
    isPartition: await exists(path.join(dir, "partition")),
    hasDeviceLink: await exists(path.join(dir, "device")),
  };
}

function skipReason(device: BlockDeviceFacts, minimumBytes: number): string | undefined {
  const prefix = skippedPrefixes.find(([start]) => device.name.startsWith(start));
  if (prefix) return prefix[1];
  if (device.isPartition) return "a partition";
  if (!device.hasDeviceLink) return "virtual device, no device link";
  if (device.bytes === undefined) return "size unreadable";
  if (device.bytes === 0) return "no medium";
  if (device.readOnly) return "read-only";
  if (device.removable) return "removable: USB stick or card reader";
  if (device.bytes < minimumBytes) return `${tooSmallReason}: ${describeSize(device.bytes)}`;
  return undefined;
}

async function explicitDisk(sysBlock: string, explicit: string, minimumBytes: number): Promise<ChosenDisk> {
  const name = explicit.replace(/^\/dev\//, "");
  const what = `the disk named by rtr7.disk=${explicit}`;
  const present = (await readdir(sysBlock).catch(() => [] as string[])).sort();
  const validName = /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name);
  if (!validName || !present.includes(name)) {
    const parent = validName ? await diskHolding(sysBlock, present, name) : undefined;
    if (parent !== undefined)
      throw new Rtr7Error("RTR7_ERR_DISK_UNSUITABLE", `choose ${what}: ${name} is a partition of ${parent}`);
    throw new Rtr7Error(
      "RTR7_ERR_DISK_NOT_FOUND",
      `choose ${what}: no ${name} in ${sysBlock}; present: ${present.join(", ") || "nothing"}`,
    );
  }
  const device = await readBlockDevice(sysBlock, name);
  const unsuitable = (why: string): Rtr7Error =>
    new Rtr7Error("RTR7_ERR_DISK_UNSUITABLE", `choose ${what}: ${name} ${why}`);
  if (device.isPartition) throw unsuitable("is a partition");
  if (device.bytes === undefined) throw unsuitable("has no readable size");
  if (device.bytes === 0) throw unsuitable("has no medium");
  if (device.readOnly) throw unsuitable("is read-only");
  if (device.bytes < minimumBytes)
    throw new Rtr7Error(
      "RTR7_ERR_DISK_TOO_SMALL",
      `choose ${what}: ${name} holds ${describeSize(device.bytes)}, need at least ${describeSize(minimumBytes)}`,
    );
  // Removable, loop or virtual devices are fine here: whoever named the disk knows what it is.
  return chosen(device);
}

/** The disk whose directory holds partition `name` (sda for sda1), if any. */
async function diskHolding(sysBlock: string, disks: string[], name: string): Promise<string | undefined> {
  for (const disk of disks) if (await exists(path.join(sysBlock, disk, name, "partition"))) return disk;
  return undefined;
}

function chosen(device: BlockDeviceFacts): ChosenDisk {
  return { device: `/dev/${device.name}`, bytes: device.bytes ?? 0, sectorSize: device.sectorSize };
}

function sized(device: BlockDeviceFacts): string {
  return `${device.name} ${describeSize(device.bytes ?? 0)}`;
}

async function readAttribute(dir: string, attribute: string): Promise<string | undefined> {
  try {
    return (await readFile(path.join(dir, attribute), "utf8")).trim();
  } catch {
    return undefined;
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch {
    return false;
  }
}
