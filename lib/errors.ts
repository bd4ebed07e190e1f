// The one error catalogue of rtr7. Every error a user can act on is an
// Rtr7Error with a stable code from this table; the message says what failed
// (operation, input, got/want) and the hint says what to do about it. Callers
// tell errors apart by `code` (or `instanceof`), never by message text.
// docs/errors.md documents every code; a unit test keeps the two in step.

export const errorCatalogue = {
  // Set-up and arguments
  RTR7_ERR_USAGE: "Run the command with --help to see its flags and examples.",
  RTR7_ERR_INTERNAL: "This is a bug in rtr7: run again with DEBUG=1 and report the stack trace.",
  RTR7_ERR_FILE_MISSING: "Check the path; image flags take files, --image-dir takes a directory.",
  RTR7_ERR_NOT_ROOT: "Run as root (sudo): serving DHCP and TFTP needs privileged ports.",
  RTR7_ERR_TOOL_MISSING: "Run scripts/setup.sh, which installs the Debian packages rtr7 needs.",

  // Network interfaces
  RTR7_ERR_INTERFACE_NONE: "Bring up the interface that faces the unit and give it one IPv4 address.",
  RTR7_ERR_INTERFACE_AMBIGUOUS: "Choose one with --interface NAME.",
  RTR7_ERR_INTERFACE_NOT_FOUND: "List interfaces with `ip -br addr` and pass one of them to --interface.",
  RTR7_ERR_INTERFACE_ADDRESS:
    "Give the interface exactly one IPv4 address (ip addr add ADDR/PREFIX dev NAME).",

  // Servers
  RTR7_ERR_LISTEN:
    "Another server (dnsmasq, tftpd, a web server) may hold the port: stop it or pick another port.",
  RTR7_ERR_DHCP_PACKET: "A malformed DHCP packet was skipped; nothing to do unless it repeats.",
  RTR7_ERR_TFTP_PACKET: "A malformed TFTP packet was skipped; nothing to do unless it repeats.",

  // Recovery run
  RTR7_ERR_RECOVERY_FAILED:
    "Read the unit's message above and its serial console log, fix the cause, then run again.",
  RTR7_ERR_RECOVERY_TIMEOUT:
    "Check the unit's cabling and its boot order (or use --serial with --boot-menu), then run again.",
  RTR7_ERR_ABORTED: "Nothing to fix: the run was stopped (Ctrl-C or a signal) before it finished.",
  RTR7_ERR_KERNEL_PANIC: "The unit's kernel panicked: read the console log; check --kernel and --initrd.",

  // Backup restore (recovery-init)
  RTR7_ERR_BACKUP_REJECTED:
    "The backup holds an entry rtr7 will not restore (a link, device, unsafe name or over a limit); the target was left as it was: list it with `tar tvzf backup.tar.gz` and make a new backup of /perm.",
  RTR7_ERR_BACKUP_CORRUPT:
    "The backup is not a complete gzip tar: check it with `tar tzf backup.tar.gz` and download it again, or make a new one.",
  RTR7_ERR_BACKUP_WRITE:
    "Writing into the target failed: check that it is mounted read-write and has room (`df -h /perm`), then run the recovery again.",

  // Images on the unit
  RTR7_ERR_IMAGE_FETCH:
    "Check that rtr7 recover still runs and serves the image (its log shows each request).",
  RTR7_ERR_IMAGE_VERIFY:
    "Rebuild or re-copy the images so they match their manifest; if the read-back differs, replace the unit's disk.",
  RTR7_ERR_IMAGE_TOO_LARGE:
    "Build a smaller image: the partition layout is fixed (boot 100 MiB, root 500 MiB).",

  // Recovery initramfs (built on the workstation)
  RTR7_ERR_KERNEL_MODULES:
    "Use a kernel whose /lib/modules/<release> holds uncompressed .ko files for virtio_blk, e1000 and ext4 (Debian's linux-image-amd64 does), or name that directory explicitly.",
  RTR7_ERR_INITRAMFS_BUILD:
    "Read the cause in the message (a bundling error, a library ldd cannot find, an unwritable cache directory), fix it and build again.",

  // Hardware
  RTR7_ERR_REBOOTOR_OPEN:
    'Allow access to the Teensy rebootor with a udev rule in /etc/udev/rules.d/70-rtr7-rebootor.rules: SUBSYSTEM=="hidraw", ATTRS{idVendor}=="16c0", ATTRS{idProduct}=="0477", MODE="0660", GROUP="plugdev" (then `udevadm control --reload` and replug it, and be in group plugdev); or run as root.',
  RTR7_ERR_REBOOTOR_AMBIGUOUS: "Several rebootors are attached: choose one with --rebootor SERIAL_OR_PATH.",
  RTR7_ERR_REBOOTOR_NOT_FOUND:
    "No rebootor matches --rebootor: run `rtr7 reset --list` to see the attached ones.",
  RTR7_ERR_REBOOTOR_WRITE: "Unplug and replug the rebootor, then try again.",
  RTR7_ERR_SERIAL_OPEN:
    "Check the --serial path and that no other program (screen, minicom) holds it; you may need to be in the dialout group.",
  RTR7_ERR_BOOT_MENU:
    "Watch the console (rtr7 console --serial PATH) and check --boot-menu matches the unit's firmware.",

  // Target disk (recovery-init)
  RTR7_ERR_DISK_NONE:
    "Check that the unit's disk is attached and detected (the message lists every block device seen and why it was skipped); name it with rtr7 recover --disk NAME if it was skipped wrongly.",
  RTR7_ERR_DISK_AMBIGUOUS: "Name the disk to erase with rtr7 recover --disk NAME (for example --disk sda).",
  RTR7_ERR_DISK_NOT_FOUND:
    "Check the name given with --disk (rtr7.disk=) against the unit's /sys/block (sda, vda, nvme0n1, mmcblk0).",
  RTR7_ERR_DISK_UNSUITABLE:
    "Name a whole, writable disk with --disk (sda, not sda1; not a read-only or write-protected device).",
  RTR7_ERR_DISK_TOO_SMALL:
    "Use a disk of at least the size named in the message: boot, two root slots and /perm need about 1.2 GiB.",
  RTR7_ERR_DISK_PARTITION_TABLE:
    "The disk's first sector holds no valid MBR partition table: recover the unit again to rewrite it.",

  // Images built on the workstation
  RTR7_ERR_IMAGE_BUILD:
    "Read the cause in the message (a missing tool, a file that does not fit, an unreadable --add source), fix it and build again.",

  // The unit's boot partition and update API
  RTR7_ERR_BOOT_CONFIG:
    "The boot partition's syslinux.cfg is missing or damaged: push a new boot image (rtr7 safe-update) or recover the unit.",
  RTR7_ERR_UPDATE_AUTH:
    "Use user gokrazy and the unit's password from /perm/gokr-pw.txt (kept on the workstation in ~/.config/gokrazy/hosts/HOST/http-password.txt).",
  RTR7_ERR_UPDATE_BUSY: "Another update is running on the unit: wait for it to finish, then try again.",
  RTR7_ERR_UPDATE_REQUEST:
    "Send the request as the update protocol says (PUT for uploads, POST for switch, testboot, commit and reboot).",
  RTR7_ERR_UPDATE_TRUNCATED:
    "The upload ended before its end: the slot is marked invalid; upload the image again before switch or testboot.",
  RTR7_ERR_SLOT_INVALID:
    "The inactive slot holds no complete root image: upload one (PUT /update/root) before switch or testboot.",
  RTR7_ERR_UPDATE_WRITE:
    "Writing to the unit's partition failed: read the unit's log (its console or the update API's status page); if it repeats, recover the unit.",

  // safe-update
  RTR7_ERR_UNIT_UNHEALTHY:
    "Make the unit healthy first (read first_error in its /health.json, http://UNIT:7733/), then update again.",
  RTR7_ERR_UPDATE_FAILED:
    "Read what failed above; the unit runs the version named there. The run directory's events.jsonl and stderr.log have the details.",

  // The workstation's update client (updates/)
  RTR7_ERR_PASSWORD_MISSING:
    "Put the unit's password (its /perm/gokr-pw.txt) in ~/.config/gokrazy/hosts/HOST/http-password.txt, or set RTR7_PASSWORD.",
  RTR7_ERR_UPDATE_HASH:
    "The image did not reach the unit intact: push it again; if it repeats, check the network and the unit's disk (read the unit's log).",
  RTR7_ERR_UNIT_UNREACHABLE:
    "Check that the unit is powered and on the network (ping it, open http://UNIT:7733/), then run again.",
  RTR7_ERR_UNIT_FAILED:
    "Read the unit's message above and its log (its console, or the update API's status page at http://UNIT/).",
  RTR7_ERR_BACKUP_DOWNLOAD:
    "Check that backupd runs on the unit (http://UNIT:8077/backup.tar.gz) and read its log, then run again.",

  // Virtual units (rtr7 lab unit)
  RTR7_ERR_LAB_UNIT:
    "Check --dir and --image-dir: a new unit directory is filled from the images of `rtr7 image build`.",
} as const satisfies Record<string, string>;

export type ErrorCode = keyof typeof errorCatalogue;

export interface Rtr7ErrorOptions {
  cause?: unknown;
  /** Overrides the catalogue's hint where the thrower knows better. */
  hint?: string;
}

export class Rtr7Error extends Error {
  readonly code: ErrorCode;
  readonly hint: string;

  constructor(code: ErrorCode, message: string, options: Rtr7ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "Rtr7Error";
    this.code = code;
    this.hint = options.hint ?? errorCatalogue[code];
  }
}

export function isRtr7Error(error: unknown, code?: ErrorCode): error is Rtr7Error {
  return error instanceof Rtr7Error && (code === undefined || error.code === code);
}

/** A short description of any thrown value, for logs. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
