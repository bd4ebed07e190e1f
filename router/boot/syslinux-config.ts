// The unit's boot configuration: syslinux.cfg on the FAT boot partition,
// with one label per root slot. DEFAULT names the committed slot, the only
// one a power cycle, a panic or a watchdog reset ever boots; a slot on
// trial is reached by kexec with the new slot's label (see router/boot/
// boot-control.ts), so an uncommitted update can never become the default by
// accident. The image builder writes this file, the update API rewrites the
// DEFAULT line on switch and commit.
import { Rtr7Error } from "../../lib/errors.js";
import { partitionUuid, rootSlotPartition } from "../../lib/wire/disk-layout.js";
import { unitCmdlineKeys } from "../../lib/wire/kernel-cmdline.js";
import { slots, type Slot } from "../unit.js";

export const bootFiles = {
  config: "syslinux.cfg",
  kernel: "vmlinuz",
  initrd: "initrd.img",
} as const;

/** Kernel parameters every slot boots with (besides root= and rtr7.slot=). */
export const commonKernelParameters = "ro console=ttyS0,115200n8 panic=10 rootwait";

export interface BootLabel {
  kernel: string;
  initrd?: string;
  append: string;
}

export interface BootConfig {
  defaultSlot: Slot;
  labels: Partial<Record<Slot, BootLabel>>;
}

export function slotKernelParameters(diskId: number, slot: Slot, extra = ""): string {
  const root = `root=PARTUUID=${partitionUuid(diskId, rootSlotPartition(slot))}`;
  return [root, commonKernelParameters, `${unitCmdlineKeys.slot}=${slot}`, extra]
    .filter((part) => part !== "")
    .join(" ");
}

export function renderSyslinuxConfig(options: {
  diskId: number;
  defaultSlot: Slot;
  /** Extra kernel parameters for both slots. */
  extraParameters?: string;
}): string {
  const lines = [
    "# rtr7 boot configuration. DEFAULT names the committed root slot;",
    "# the unit's update API rewrites that line on switch and commit.",
    `DEFAULT ${options.defaultSlot}`,
    "PROMPT 0",
    "TIMEOUT 0",
    "SERIAL 0 115200",
  ];
  for (const slot of slots) {
    lines.push(
      `LABEL ${slot}`,
      `  LINUX /${bootFiles.kernel}`,
      `  INITRD /${bootFiles.initrd}`,
      `  APPEND ${slotKernelParameters(options.diskId, slot, options.extraParameters)}`,
    );
  }
  return lines.join("\n") + "\n";
}

export function parseSyslinuxConfig(text: string): BootConfig {
  let defaultSlot: Slot | undefined;
  const labels: Partial<Record<Slot, BootLabel>> = {};
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
      `read ${bootFiles.config}: no "DEFAULT a" or "DEFAULT b" line in it`,
    );
  return { defaultSlot, labels };
}

/** `text` with its DEFAULT line naming `slot`; every other byte unchanged. */
export function withDefaultSlot(text: string, slot: Slot): string {
  parseSyslinuxConfig(text);
  return text.replace(/^(\s*DEFAULT\s+)\S+/im, `$1${slot}`);
}
