// The names of a release's three images, as `rtr7 image build` writes them,
// `rtr7 recover` serves them, recovery-init fetches them and the update
// runs directory keeps them. Defined once here; every side imports them.

/** Each image's file name, by what it fills: the MBR's boot code, the boot partition, a root slot. */
export const imageFiles = { mbr: "mbr.img", boot: "boot.img", root: "root.img" } as const;

export type ImageRole = keyof typeof imageFiles;

/** The images in the order a recovery writes them and a manifest lists them. */
export const imageNames = [imageFiles.mbr, imageFiles.boot, imageFiles.root] as const;
export type ImageName = (typeof imageNames)[number];
