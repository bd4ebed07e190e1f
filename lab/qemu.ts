// A virtual unit: QEMU (software emulation, LAB.md) with one e1000 NIC on a
// tap device and an optional disk. Either it can only boot from the network
// (as a bricked unit whose disk is blank), or the disk comes first and the
// SeaBIOS boot menu, reached over the serial console, must choose iPXE.
export interface QemuUnitOptions {
  tap: string;
  mac?: string;
  disk?: string;
  /** How the disk is attached: IDE (default) or virtio (faster under emulation). */
  diskInterface?: "ide" | "virtio";
  memoryMiB?: number;
  /** "network": network only. "menu": disk first, boot menu enabled. "disk": the disk only. */
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
  const args = [
    "-m",
    String(options.memoryMiB ?? 512),
    "-nographic",
    ...(options.allowReboot ? [] : ["-no-reboot"]),
    "-netdev",
    `tap,id=n0,ifname=${options.tap},script=no,downscript=no`,
    "-device",
    `e1000,netdev=n0,mac=${options.mac ?? "52:54:00:12:34:56"}`,
  ];
  if (options.disk)
    args.push("-drive", `file=${options.disk},format=raw,if=${options.diskInterface ?? "ide"}`);
  if (options.boot === "network") args.push("-boot", "order=n");
  else if (options.boot === "disk") args.push("-boot", "order=c");
  else args.push("-boot", "menu=on,order=c,splash-time=5000");
  if (options.serialSocket) {
    // -nographic stays: it is what makes SeaBIOS print to the serial port.
    args.push("-monitor", "none", "-serial", `unix:${options.serialSocket}`);
  }
  return args;
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
export function recoveryUnitArgs(options: { tap: string; disk: string; mac?: string }): string[] {
  return qemuUnitArgs({ ...options, boot: "network", diskInterface: "virtio", memoryMiB: 1024 });
}

/**
 * A unit booting from its own disk (boot.img, a root slot and /perm, as a
 * recovery or `dd` left them): virtio disk, 1 GiB for node, and reboots
 * allowed, since falling back to the committed slot is a firmware reboot.
 */
export function diskUnitArgs(options: { tap: string; disk: string; mac?: string }): string[] {
  return qemuUnitArgs({
    ...options,
    boot: "disk",
    diskInterface: "virtio",
    memoryMiB: 1024,
    allowReboot: true,
  });
}
