import { Flags } from "@oclif/core";
import { Rtr7Command } from "../base.js";
import {
  baudFlag,
  diskFlag,
  hostnameFlag,
  interfaceFlag,
  kernelFlag,
  macFlag,
  rebootorFlag,
  serialFlag,
} from "../flags.js";

export default class Recover extends Rtr7Command {
  static override summary = "Re-image a unit over the network (PXE): DHCP, TFTP and HTTP for one recovery.";

  static override description = `Starts a PXE-only DHCP responder, TFTP and HTTP on the interface facing the unit,
resets the unit through a Teensy rebootor (or drives its boot menu over a serial console),
serves pxelinux, the kernel and the recovery initramfs, then the images. Exits 0 when the
unit reports success, non-zero with the unit's error otherwise. Only PXE clients are
answered, so the LAN's own DHCP server is not disturbed.

The unit's entry in the fleet inventory ($XDG_CONFIG_HOME/rtr7/fleet.json, \`rtr7 fleet add\`)
gives --mac, --rebootor, --serial and --disk when they are not given. The images may be
built for this hostname or be a fleet release (\`rtr7 image build\` without --hostname);
images built for another hostname are refused. The unit gets the update API password
this workstation keeps for it (RTR7_PASSWORD, or gokrazy's hosts/H/http-password.txt, or
its global http-password.txt); without one a new one is made and kept in
hosts/H/http-password.txt (0600). It travels over the recovery's token-checked HTTP only.

A unit that trusts no signing key is given this workstation's (\`rtr7 keys init\`). A unit
that trusts keys takes only a release one of them signed; --new-key replaces its keys.`;

  static override examples = [
    {
      description: "Recover router7 from a build directory, resetting it with the rebootor:",
      command: "<%= config.bin %> recover --hostname router7 --image-dir ./build",
    },
    {
      description: "Name each image, keep /perm's backup, and choose the interface:",
      command:
        "<%= config.bin %> recover --hostname router7 --mbr mbr.img --boot boot.img --root root.img --backup backup.tar.gz --interface enp3s0",
    },
    {
      description:
        "No rebootor: boot the unit from the network through its SeaBIOS menu on a serial console:",
      command:
        "<%= config.bin %> recover --hostname router7 --image-dir ./build --no-reset --serial /dev/ttyUSB0 --boot-menu seabios",
    },
  ];

  static override flags = {
    boot: Flags.file({ description: "Boot partition image (FAT).", exists: true }),
    root: Flags.file({ description: "Root file system image (squashfs).", exists: true }),
    mbr: Flags.file({ description: "MBR image (its boot code is used).", exists: true }),
    "image-dir": Flags.directory({
      description: "Directory holding mbr.img, boot.img, root.img and optionally backup.tar.gz.",
      exists: true,
    }),
    backup: Flags.file({
      description: "Backup of /perm (backup.tar.gz) to restore on the unit.",
      exists: true,
    }),
    hostname: hostnameFlag(),
    interface: interfaceFlag(
      "Interface facing the unit [default: the first up, non-loopback one with one IPv4 address].",
    ),
    "recover-octet": Flags.integer({
      description: "Last byte of the address offered to the unit.",
      default: 1,
      min: 1,
      max: 254,
    }),
    mac: macFlag(),
    disk: diskFlag(),
    reset: Flags.boolean({
      description: "Reset the unit through the Teensy rebootor.",
      default: true,
      allowNo: true,
    }),
    rebootor: rebootorFlag(),
    serial: serialFlag("Serial console of the unit (e.g. /dev/ttyUSB0); lines are shown and logged."),
    baud: baudFlag(),
    "boot-menu": Flags.option({
      options: ["seabios", "apu2", "none"] as const,
      default: "none" as const,
      description: "Choose network boot in the firmware's boot menu over --serial.",
    })(),
    "serial-log": Flags.string({
      description:
        "Append the raw console output to this file [default: with --serial, ./console-<hostname>.log].",
    }),
    kernel: kernelFlag("Kernel pxelinux boots [default: the newest /boot/vmlinuz-*]."),
    initrd: Flags.file({
      description:
        "Initramfs pxelinux boots [default: rtr7's recovery initramfs for --kernel, built once and cached].",
      exists: true,
    }),
    "boot-over": Flags.option({
      options: ["tftp", "http"] as const,
      default: "tftp" as const,
      description:
        "How the unit fetches the kernel and initramfs: TFTP (every PXE firmware), or HTTP from --http-port through lpxelinux.0 (BIOS units only; about twice as fast for the 42 MB initramfs).",
    })(),
    "http-port": Flags.integer({ description: "HTTP port for images and reports.", default: 7773 }),
    "tftp-port": Flags.integer({ description: "TFTP port.", default: 69 }),
    "dhcp-port": Flags.integer({ description: "DHCP server port.", default: 67 }),
    timeout: Flags.string({ description: "Give up (non-zero exit) after this long, e.g. 10m." }),
    "new-key": Flags.boolean({
      description:
        "Replace the keys the unit trusts by this workstation's signing key, without checking the release against the old ones (the old key is lost, or the unit changes hands).",
      default: false,
    }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Recover);
    const log = this.makeLogger(flags);
    const { recover } = await import("../../server/recover.js");
    const { resolveRecoveryImages, withInventoryDefaults } = await import("../recover-inputs.js");
    const { newestKernel } = await import("../../lib/host-kernel.js");
    const { parseDuration } = await import("../../lib/duration.js");
    const { Rtr7Error } = await import("../../lib/errors.js");
    const { inventoryFile, inventoryUnit, recordUnitPin } = await import("../../updates/fleet/inventory.js");
    const inventory = inventoryFile();
    const { values: unit, fromInventory } = withInventoryDefaults(
      { mac: flags.mac, rebootor: flags.rebootor, serial: flags.serial, disk: flags.disk },
      await inventoryUnit(inventory, flags.hostname),
    );
    if (fromInventory.length > 0)
      log.info(
        {
          event: "inventory",
          file: inventory,
          ...Object.fromEntries(fromInventory.map((flag) => [flag, unit[flag]])),
        },
        `from ${flags.hostname}'s entry in ${inventory}: ${fromInventory.map((flag) => `--${flag} ${unit[flag] ?? ""}`).join(", ")}`,
      );
    const controller = new AbortController();
    const stop = (signal: NodeJS.Signals): void =>
      controller.abort(
        new Rtr7Error("RTR7_ERR_ABORTED", `recovery: stopped by ${signal} before the unit reported`),
      );
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    const { progressView } = await import("../progress.js");
    const progress = await progressView({ json: flags.json, log, terminal: process.stdout.isTTY === true });
    const summary = await recover({
      images: resolveRecoveryImages({
        imageDir: flags["image-dir"],
        mbr: flags.mbr,
        boot: flags.boot,
        root: flags.root,
        backup: flags.backup,
      }),
      hostname: flags.hostname,
      kernel: flags.kernel ?? newestKernel(),
      initrd: flags.initrd,
      bootOver: flags["boot-over"],
      interfaceName: flags.interface,
      recoverOctet: flags["recover-octet"],
      mac: unit.mac,
      disk: unit.disk,
      reset: flags.reset,
      rebootor: unit.rebootor,
      serial: unit.serial
        ? {
            path: unit.serial,
            baudRate: flags.baud,
            bootMenu: flags["boot-menu"],
            logFile: flags["serial-log"] ?? `console-${flags.hostname}.log`,
          }
        : undefined,
      ports: { http: flags["http-port"], tftp: flags["tftp-port"], dhcp: flags["dhcp-port"] },
      newKey: flags["new-key"],
      timeoutMs: flags.timeout === undefined ? undefined : parseDuration(flags.timeout, "--timeout"),
      log,
      signal: controller.signal,
      onProgress: (report) => progress.update(report),
    }).finally(() => progress.stop());
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    const { formatBytes } = await import("../../lib/log.js");
    const seconds = (summary.durationMs / 1000).toFixed(1);
    log.info(
      { event: "success", ...summary },
      `recovered ${summary.hostname} (${summary.unitMac ?? "unknown MAC"}, ${summary.unitAddress}) in ${seconds} s; served ${formatBytes(summary.bytesServed.http)} over HTTP and ${formatBytes(summary.bytesServed.tftp)} over TFTP`,
    );
    if (summary.tlsFingerprint !== undefined) {
      const fingerprint = summary.tlsFingerprint;
      const before = await recordUnitPin(
        inventory,
        { hostname: flags.hostname, address: summary.unitAddress },
        fingerprint,
      );
      log.info(
        { event: "tls-pinned", file: inventory, fingerprint, previous: before ?? null },
        `pinned ${flags.hostname}'s TLS certificate SHA-256 ${fingerprint} in ${inventory}${before !== undefined && before !== fingerprint ? ` (it was ${before})` : ""}`,
      );
    }
  }
}
