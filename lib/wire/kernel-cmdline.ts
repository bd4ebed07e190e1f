// Every kernel command-line key rtr7 puts on a unit's command line, and the
// one place that reads a command line into key=value pairs. The recovery
// server writes the recovery keys into pxelinux's config; recovery-init
// reads them. The unit's boot config writes the slot keys; its init reads
// them.

/** Keys of a recovery boot (pxelinux.cfg/default → recovery-init). */
export const recoveryCmdlineKeys = {
  /** The recovery server's address. */
  server: "rtr7.server",
  /** Its HTTP port (default 7773, router7's). */
  port: "rtr7.port",
  /** The unit's hostname, whose FNV-1a is the disk identifier. */
  hostname: "rtr7.hostname",
  /** The session token every report carries. */
  token: "rtr7.token",
  /** The disk to erase (sda or /dev/sda), when the unit has several. */
  disk: "rtr7.disk",
} as const;

/** Keys of a unit's own boot (syslinux.cfg or kexec → the unit's init). */
export const unitCmdlineKeys = {
  /** The root slot this kernel was booted for: "a" or "b". */
  slot: "rtr7.slot",
  /** Present while the slot runs on trial: the commit deadline in ms. */
  trial: "rtr7.trial",
} as const;

/** `key=value` words of a kernel command line; a bare word maps to "". The last one wins. */
export function cmdlineValues(cmdline: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const word of cmdline.trim().split(/\s+/)) {
    if (word === "") continue;
    const equals = word.indexOf("=");
    if (equals < 0) values.set(word, "");
    else values.set(word.slice(0, equals), word.slice(equals + 1));
  }
  return values;
}
