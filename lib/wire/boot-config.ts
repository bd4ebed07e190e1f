// The unit's boot configuration, /syslinux.cfg on the FAT boot partition,
// which syslinux reads on BIOS (ldlinux.sys) and on UEFI (syslinux.efi) alike.
// One label per root slot, each with its own kernel and boot initrd
// (/a/vmlinuz, /a/initrd.img; /b/...), so an update writes the new slot's
// kernel beside the committed one and never over it. DEFAULT names the
// committed slot, the only one a power cycle, a panic or a watchdog reset
// ever boots; a slot on trial is reached by kexec (router/boot/
// boot-control.ts).
//
// The file is rendered to a fixed size that fits in one 512-byte sector, so
// the unit changes it (switch, commit, a new label) by rewriting that one
// sector in place: a power cut leaves the old sector or the new one, and
// syslinux reads a whole configuration either way. The image builder, the
// unit's update API and recovery-init all render it here.
import { Rtr7Error } from "../errors.js";
import { partitionUuid, rootSlotPartition } from "./disk-layout.js";
import { unitCmdlineKeys } from "./kernel-cmdline.js";

export type BootSlot = "a" | "b";
const bootSlots: readonly BootSlot[] = ["a", "b"];

/** The configuration file, at the boot partition's root. */
export const bootConfigFile = "syslinux.cfg";
/** The most the file may hold: one sector, written in one piece. */
export const bootConfigMaxBytes = 512;

/** Where slot `slot`'s kernel and boot initrd live on the boot partition. */
export function slotBootFiles(slot: BootSlot): { kernel: string; initrd: string } {
  return { kernel: `${slot}/vmlinuz`, initrd: `${slot}/initrd.img` };
}

/** The one kernel and initrd of a boot partition written before per-slot kernels. */
export const legacyBootFiles = { kernel: "vmlinuz", initrd: "initrd.img" } as const;

/** The UEFI loader (syslinux.efi, efi64) and its core module, where x86-64 firmware looks. */
export const efiBootFiles = { loader: "EFI/BOOT/BOOTX64.EFI", core: "EFI/BOOT/ldlinux.e64" } as const;

/** Kernel parameters every slot boots with (besides root= and rtr7.slot=). */
export const commonKernelParameters = "ro console=ttyS0,115200n8 panic=10 rootwait";

export interface BootLabel {
  /** Path on the boot partition, without the leading slash. */
  kernel: string;
  initrd?: string;
  append: string;
}

export interface BootConfig {
  defaultSlot: BootSlot;
  labels: Partial<Record<BootSlot, BootLabel>>;
}

export function slotKernelParameters(diskId: number, slot: BootSlot, extra = ""): string {
  const root = `root=PARTUUID=${partitionUuid(diskId, rootSlotPartition(slot))}`;
  return [root, commonKernelParameters, `${unitCmdlineKeys.slot}=${slot}`, extra]
    .filter((part) => part !== "")
    .join(" ");
}

/** Both labels booting their own slot's files from the disk with MBR id `diskId`. */
export function slotBootConfig(options: {
  diskId: number;
  defaultSlot: BootSlot;
  /** Extra kernel parameters for both slots. */
  extraParameters?: string;
}): BootConfig {
  const labels: Partial<Record<BootSlot, BootLabel>> = {};
  for (const slot of bootSlots) {
    labels[slot] = {
      ...slotBootFiles(slot),
      append: slotKernelParameters(options.diskId, slot, options.extraParameters),
    };
  }
  return { defaultSlot: options.defaultSlot, labels };
}

/**
 * The file's text, padded with blanks to exactly `size` bytes (default one
 * sector). Throws RTR7_ERR_BOOT_CONFIG when it does not fit.
 */
export function renderBootConfig(config: BootConfig, size = bootConfigMaxBytes): Buffer {
  const lines = [
    "# rtr7: one sector, rewritten in place",
    `DEFAULT ${config.defaultSlot}`,
    "PROMPT 0",
    "TIMEOUT 0",
    "SERIAL 0 115200",
  ];
  for (const slot of bootSlots) {
    const label = config.labels[slot];
    if (!label) continue;
    lines.push(`LABEL ${slot}`, ` LINUX /${label.kernel}`);
    if (label.initrd) lines.push(` INITRD /${label.initrd}`);
    lines.push(` APPEND ${label.append}`);
  }
  const text = Buffer.from(lines.join("\n") + "\n", "utf8");
  if (text.length > size)
    throw new Rtr7Error(
      "RTR7_ERR_BOOT_CONFIG",
      `render ${bootConfigFile}: it needs ${text.length} bytes, but must fit in ${size} (one sector, rewritten in one write)`,
      { hint: "Shorten the extra kernel parameters." },
    );
  const padding = size - text.length;
  // A comment line of blanks: syslinux skips it.
  const fill = padding >= 2 ? `#${" ".repeat(padding - 2)}\n` : "\n".repeat(padding);
  return Buffer.concat([text, Buffer.from(fill, "utf8")]);
}

export function parseBootConfig(text: string): BootConfig {
  let defaultSlot: BootSlot | undefined;
  const labels: Partial<Record<BootSlot, BootLabel>> = {};
  let current: BootLabel | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [keyword = "", ...rest] = line.split(/\s+/);
    const value = rest.join(" ");
    switch (keyword.toUpperCase()) {
      case "DEFAULT":
        if (value === "a" || value === "b") defaultSlot = value;
        break;
      case "LABEL":
        current = value === "a" || value === "b" ? (labels[value] = { kernel: "", append: "" }) : undefined;
        break;
      case "LINUX":
      case "KERNEL":
        if (current) current.kernel = value.replace(/^\//, "");
        break;
      case "INITRD":
        if (current) current.initrd = value.replace(/^\//, "");
        break;
      case "APPEND":
        if (current) current.append = value;
        break;
      default:
        break;
    }
  }
  if (!defaultSlot)
    throw new Rtr7Error(
      "RTR7_ERR_BOOT_CONFIG",
      `read ${bootConfigFile}: no "DEFAULT a" or "DEFAULT b" line in it`,
    );
  return { defaultSlot, labels };
}

/**
 * `append` with its root= naming partition `slot` of the disk with MBR id
 * `diskId`: a fleet release is built without knowing the unit's disk id,
 * and the unit puts its own in when it installs a label.
 */
export function withRootDisk(append: string, diskId: number, slot: BootSlot): string {
  const root = `root=PARTUUID=${partitionUuid(diskId, rootSlotPartition(slot))}`;
  const words = append.split(/\s+/).filter((word) => word !== "" && !word.startsWith("root="));
  return [root, ...words].join(" ");
}

/**
 * The MBR disk identifiers the labels' root= name (0 in a fleet release,
 * built for no unit in particular); empty when no label names one.
 */
export function bootConfigRootDisks(config: BootConfig): number[] {
  const disks = new Set<number>();
  for (const slot of bootSlots) {
    const append = config.labels[slot]?.append ?? "";
    const match = /(?:^|\s)root=PARTUUID=([0-9a-fA-F]{8})-0[0-9a-fA-F](?:\s|$)/.exec(append);
    if (match?.[1]) disks.add(Number.parseInt(match[1], 16));
  }
  return [...disks];
}

/** `config` with every label's root= naming its slot on the disk with MBR id `diskId`. */
export function withConfigRootDisk(config: BootConfig, diskId: number): BootConfig {
  const labels: Partial<Record<BootSlot, BootLabel>> = {};
  for (const slot of bootSlots) {
    const label = config.labels[slot];
    if (label) labels[slot] = { ...label, append: withRootDisk(label.append, diskId, slot) };
  }
  return { defaultSlot: config.defaultSlot, labels };
}
