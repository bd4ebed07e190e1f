// The flags several commands share, defined once: the unit's hostname, the
// interface facing it, its serial console and speed, the kernel and the
// rebootor (and recover's disk and MAC, whose values reach the unit's kernel
// command line). A flag's value is checked while oclif parses it, with the
// same checks the libraries make (lib/wire/names.ts), so a bad value is a
// usage error that names the flag before anything starts.
import { Args, Flags } from "@oclif/core";
import { checkedDiskName, checkedHostname, normaliseMac } from "../lib/wire/names.js";

/** --hostname H: the unit's hostname (required). */
export function hostnameFlag(description = "The unit's hostname.") {
  return Flags.string({
    description,
    required: true,
    helpValue: "H",
    parse: (input) => Promise.resolve(checkedHostname(input)),
  });
}

/** HOSTNAME as a command's argument (fleet add, rm, trust, enroll). */
export function hostnameArg() {
  return Args.string({
    description: "The unit's hostname.",
    required: true,
    parse: (input) => Promise.resolve(checkedHostname(input)),
  });
}

/** --server URL and --credential FILE: how the workstation reaches `rtr7 fleet serve` (publish, enroll). */
export const fleetServerFlags = {
  server: Flags.string({
    description: "The server's URL [default: the credential file's].",
    helpValue: "URL",
  }),
  credential: Flags.string({
    description:
      "The server's admin-credential.json, copied [default: $XDG_CONFIG_HOME/rtr7/fleet-server.json].",
    helpValue: "FILE",
  }),
};

/** --interface NAME: the workstation's interface facing the unit. */
export function interfaceFlag(description: string) {
  return Flags.string({ description, helpValue: "NAME" });
}

/** --serial PATH: the unit's serial console. */
export function serialFlag(description: string) {
  return Flags.string({ description, helpValue: "PATH" });
}

/** --serial PATH, for commands that need it. */
export function requiredSerialFlag(description: string) {
  return Flags.string({ description, helpValue: "PATH", required: true });
}

/** --baud N: the serial console's speed. */
export function baudFlag() {
  return Flags.integer({ description: "Serial console speed.", default: 115200, min: 1, helpValue: "N" });
}

/** --kernel PATH: the unit's kernel; the default is each command's to say. */
export function kernelFlag(description: string) {
  return Flags.file({ description, exists: true, helpValue: "PATH" });
}

/** --rebootor SERIAL_OR_PATH: which Teensy rebootor, when several are attached. */
export function rebootorFlag() {
  return Flags.string({
    description: "Rebootor to use when several are attached: its serial number or device path.",
    helpValue: "SERIAL_OR_PATH",
  });
}

/** --disk NAME: the unit's disk for recovery-init to erase (goes on its kernel command line). */
export function diskFlag() {
  return Flags.string({
    description:
      "The unit's disk to erase and write (sda, nvme0n1) [default: the only fixed disk large enough; several are an error].",
    helpValue: "NAME",
    parse: (input) => Promise.resolve(checkedDiskName(input)),
  });
}

/** --mac MAC: the one unit the recovery server answers. */
export function macFlag() {
  return Flags.string({
    description: "Serve only this MAC address (aa:bb:cc:dd:ee:ff).",
    helpValue: "MAC",
    parse: (input) => Promise.resolve(normaliseMac(input)),
  });
}

/** --updates-dir DIR: where runs (and the fleet's state) are kept. */
export function updatesDirFlag(what = "Where runs are kept") {
  return Flags.string({
    description: `${what} (default $XDG_DATA_HOME/rtr7/updates, i.e. ~/.local/share/rtr7/updates).`,
    helpValue: "DIR",
  });
}

/** --health-timeout DURATION: how long a new version may take to report healthy. */
export function healthTimeoutFlag() {
  return Flags.string({
    description: "How long the new version may take to report healthy.",
    default: "2m",
    helpValue: "DURATION",
  });
}

/** --kexec / --no-kexec: reboot into the new slot with kexec. */
export function kexecFlag() {
  return Flags.boolean({
    description: "Reboot into the new slot with kexec (needed for the one-shot trial boot).",
    default: true,
    allowNo: true,
  });
}

/** --keep-only N: runs to keep per unit. */
export function keepOnlyFlag() {
  return Flags.integer({
    description: "Keep this many runs per unit (never deleting the last known-good one).",
    default: 5,
    min: 1,
  });
}

/** --poll DURATION: how often a unit's health is asked while waiting for it. */
export function pollFlag() {
  return Flags.string({
    description: "How often a unit's health is asked while waiting for it.",
    default: "500ms",
    helpValue: "DURATION",
  });
}

/** --allow-downgrade: a unit that trusts a key takes a release signed before the one it runs. */
export function allowDowngradeFlag() {
  return Flags.boolean({
    description:
      "Let a unit that trusts a signing key take a release signed before the one it runs (its rollback protection refuses that otherwise, RTR7_ERR_DOWNGRADE). A rollback to the committed slot never needs it.",
    default: false,
  });
}

/** --insecure-http: no warning when a unit without a pinned certificate is reached over plain HTTP. */
export function insecureHttpFlag() {
  return Flags.boolean({
    description:
      "Reach a unit that has no pinned TLS certificate and serves no HTTPS (an older rtr7, a gokrazy unit) over plain HTTP without the warning. A unit with a pinned certificate is never sent a password in clear.",
    default: false,
  });
}
