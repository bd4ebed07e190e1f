// Paths inside the images that the workstation's builders write and the
// unit's programs read: the recovery initramfs (read by recovery-init), the
// boot initrd and the root image (read by the unit's init and services).

/** Kernel module files to insmod, one absolute path per line, in load order. */
export const modulesListPath = "/etc/rtr7/modules";

/** The image's build record: hostname, version, build time. */
export const buildInfoPath = "/etc/rtr7/build.json";

/** recovery-init's place in the recovery initramfs (rdinit=). */
export const recoveryInitPath = "/rtr7-recovery-init";
