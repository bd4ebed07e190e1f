// A virtual unit: QEMU (software emulation, LAB.md) with one e1000 NIC on a
// tap device and an optional disk. Either it can only boot from the network
// (as a bricked unit whose disk is blank), or the disk comes first and the
// SeaBIOS boot menu, reached over the serial console, must choose iPXE.
// The firmware is SeaBIOS (BIOS, the default) or OVMF (x86-64 UEFI, Debian's
// ovmf). OVMF ignores `-boot order=`: its order comes from the devices'
// bootindex (which it applies to the boot entries in its variable store),
// so a UEFI unit gets bootindex on the NIC or the disk instead.
import { copyFile, constants } from "node:fs/promises";

/** Debian's ovmf: the x86-64 firmware (no Secure Boot) and the template of its variable store. */
export const ovmfFiles = {
  code: "/usr/share/OVMF/OVMF_CODE.fd",
  varsTemplate: "/usr/share/OVMF/OVMF_VARS.fd",
} as const;

export type UnitFirmware = "bios" | "uefi";

export interface UnitFirmwareOptions {
  /** Default "bios" (SeaBIOS). */
  firmware?: UnitFirmware;
  /**
   * UEFI only, and required there: this unit's own writable copy of
   * OVMF_VARS.fd (see uefiVarsFile). It holds the boot entries OVMF
   * records, so keep it for every start of the same unit.
   */
  uefiVars?: string;
}

export interface QemuUnitOptions extends UnitFirmwareOptions {
  tap: string;
  mac?: string;
  disk?: string;
  /** How the disk is attached: IDE (default) or virtio (faster under emulation). */
  diskInterface?: "ide" | "virtio";
  memoryMiB?: number;
  /**
   * "network": network only. "menu": disk first, boot menu enabled (SeaBIOS
   * only). "disk": the disk only. With UEFI: the NIC first, or the disk first.
   */
  boot: "network" | "menu" | "disk";
  /** Let the guest reboot (a unit falling back to its committed slot) instead of QEMU exiting. */
  allowReboot?: boolean;
  /**
   * Serial console on a unix socket that something (socat bridging it to a
   * pty) already listens on; QEMU connects to it at start.
   */
  serialSocket?: string;
}

export function qemuUnitArgs(options: QemuUnitOptions): string[] {
  if (options.firmware === "uefi") return uefiUnitArgs(options);
  const args = [...commonArgs(options), "-device", nicDevice(options)];
  if (options.disk)
    args.push("-drive", `file=${options.disk},format=raw,if=${options.diskInterface ?? "ide"}`);
  if (options.boot === "network") args.push("-boot", "order=n");
  else if (options.boot === "disk") args.push("-boot", "order=c");
  else args.push("-boot", "menu=on,order=c,splash-time=5000");
  return [...args, ...serialArgs(options)];
}

function commonArgs(options: QemuUnitOptions): string[] {
  return [
    "-m",
    String(options.memoryMiB ?? 512),
    "-nographic",
    ...(options.allowReboot ? [] : ["-no-reboot"]),
    "-netdev",
    `tap,id=n0,ifname=${options.tap},script=no,downscript=no`,
  ];
}

function nicDevice(options: QemuUnitOptions, bootIndex?: number): string {
  const device = `e1000,netdev=n0,mac=${options.mac ?? "52:54:00:12:34:56"}`;
  return bootIndex === undefined ? device : `${device},bootindex=${bootIndex}`;
}

function serialArgs(options: QemuUnitOptions): string[] {
  // -nographic stays: it is what makes SeaBIOS (and OVMF) print to the serial port.
  return options.serialSocket ? ["-monitor", "none", "-serial", `unix:${options.serialSocket}`] : [];
}

/**
 * OVMF from two flash drives (the code read-only, the unit's own variable
 * store writable). The device booted first gets bootindex 1; QEMU hands the
 * order to OVMF, which tries a blank disk and moves on.
 */
function uefiUnitArgs(options: QemuUnitOptions): string[] {
  if (!options.uefiVars)
    throw new Error("a UEFI unit needs uefiVars: its own copy of OVMF_VARS.fd (uefiVarsFile makes one)");
  if (options.boot === "menu")
    throw new Error('boot "menu" drives the SeaBIOS boot menu; a UEFI unit boots "network" or "disk"');
  const networkFirst = options.boot === "network";
  const args = [
    ...commonArgs(options),
    "-drive",
    `if=pflash,format=raw,readonly=on,file=${ovmfFiles.code}`,
    "-drive",
    `if=pflash,format=raw,file=${options.uefiVars}`,
    "-device",
    nicDevice(options, networkFirst ? 1 : 2),
  ];
  if (options.disk) {
    const bootIndex = networkFirst ? 2 : 1;
    const device =
      options.diskInterface === "virtio"
        ? `virtio-blk-pci,drive=disk0,bootindex=${bootIndex}`
        : `ide-hd,drive=disk0,bus=ide.0,bootindex=${bootIndex}`;
    args.push("-drive", `file=${options.disk},format=raw,if=none,id=disk0`, "-device", device);
  }
  return [...args, ...serialArgs(options)];
}

/**
 * Makes `file` a fresh copy of OVMF's variable store unless it exists
 * already (a unit restarted keeps the entries its firmware recorded).
 */
export async function uefiVarsFile(file: string): Promise<string> {
  await copyFile(ovmfFiles.varsTemplate, file, constants.COPYFILE_EXCL).catch(
    (error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error;
    },
  );
  return file;
}

/** 512 bytes of boot code that spins for ever: a disk that "boots" but never gets anywhere. */
export function hangingBootSector(): Buffer {
  const sector = Buffer.alloc(512);
  sector[0] = 0xeb; // jmp $
  sector[1] = 0xfe;
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/**
 * The unit of a full recovery: network boot only, a virtio disk (fast under
 * emulation), and 1 GiB of memory for the recovery initramfs with node in it.
 */
export function recoveryUnitArgs(
  options: { tap: string; disk: string; mac?: string } & UnitFirmwareOptions,
): string[] {
  return qemuUnitArgs({ ...options, boot: "network", diskInterface: "virtio", memoryMiB: 1024 });
}

/**
 * A unit booting from its own disk (boot.img, a root slot and /perm, as a
 * recovery or `dd` left them): virtio disk, 1 GiB for node, and reboots
 * allowed, since falling back to the committed slot is a firmware reboot.
 */
export function diskUnitArgs(
  options: { tap: string; disk: string; mac?: string } & UnitFirmwareOptions,
): string[] {
  return qemuUnitArgs({
    ...options,
    boot: "disk",
    diskInterface: "virtio",
    memoryMiB: 1024,
    allowReboot: true,
  });
}
