// /perm's file system, as a recovery makes it and the unit mounts it. The
// unit's own state there (rtr7/slots.json, rtr7/trial.json, gokr-pw.txt,
// interfaces.json) survives a power cut because of these, together with the
// fsyncs of lib/atomic-file.ts (the file before its rename, the directory
// after it): ext4 with a journal, so a rename, link or unlink is one
// transaction that a cut leaves either done or not done; data=ordered, so a
// file's data reaches the disk before the transaction that makes it
// reachable commits; barriers on, so an fsync returns only once the disk's
// write cache has been flushed. All three are ext4's defaults. They are
// written out here so that another mke2fs.conf, or a kernel with other
// defaults, cannot quietly take them away.

/** mke2fs's arguments for a new /perm: ext4 with a journal (-j, which ext4's usual mke2fs.conf implies anyway). */
export function permMke2fsArguments(device: string, label: string): string[] {
  return ["-q", "-t", "ext4", "-j", "-L", label, device];
}

/**
 * The options the unit mounts /perm with. The kernel refuses data= on an
 * ext4 without a journal ("can't mount with data=, fs mounted w/o
 * journal"), so a mount with these fails on such a /perm.
 */
export const permMountOptions = "data=ordered,barrier=1";
