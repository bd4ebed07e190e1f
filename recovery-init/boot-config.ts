// After boot.img is written raw to partition 1: make its syslinux.cfg name
// this disk's root slots. A fleet release (`rtr7 image build` without
// --hostname) is built for no unit in particular, so its labels say
// root=PARTUUID=00000000-0N; the boot initrd finds the root slot by the MBR
// identifier on root=, which recovery set from the hostname. The file is one
// sector (lib/wire/boot-config.ts), found through lib/disk/fat32.ts, and
// rewritten in place with pure JavaScript (the initramfs has no mtools),
// fsynced and read back past the page cache. A per-host release already
// names this disk and is left as written; a boot image that holds no rtr7
// syslinux.cfg (not FAT32, or no such file) is left as written too, as
// gokrazy would.
import {
  locateBootConfigSector,
  partitionRangeReader,
  readBootConfigSector,
  writeBootConfigSector,
  type BootConfigSector,
} from "../lib/disk/boot-config-sector.js";
import type { DiskDevice } from "../lib/disk/device.js";
import { Rtr7Error, describeError } from "../lib/errors.js";
import { bootConfigRootDisks, withConfigRootDisk } from "../lib/wire/boot-config.js";
import { partitionUuid } from "../lib/wire/disk-layout.js";

export type BootConfigFit = "rewritten" | "matches" | "not-rtr7";

const hex = (diskId: number): string => partitionUuid(diskId, 0).slice(0, 8);

/**
 * Points the root= of every label of the boot partition at `partitionOffset`
 * in `disk` to the disk with MBR identifier `diskId`.
 */
export async function fitBootConfigToDisk(options: {
  disk: string;
  partitionOffset: number;
  diskId: number;
  device?: DiskDevice;
  say?: (line: string) => void;
}): Promise<BootConfigFit> {
  const say = options.say ?? (() => undefined);
  const read = partitionRangeReader(options.disk, options.partitionOffset);
  let sector: BootConfigSector | undefined;
  try {
    sector = await locateBootConfigSector(read);
  } catch (error) {
    say(`boot.img is not rtr7's (${describeError(error)}): written as it is`);
    return "not-rtr7";
  }
  if (!sector) {
    // Either no syslinux.cfg at all, or one that is not one sector: only the
    // second can be a release that needs this disk's identifier.
    say("boot.img holds no one-sector syslinux.cfg: written as it is");
    return "not-rtr7";
  }
  let config;
  try {
    config = await readBootConfigSector(read, sector);
  } catch (error) {
    say(`boot.img's syslinux.cfg is not rtr7's (${describeError(error)}): written as it is`);
    return "not-rtr7";
  }
  const named = bootConfigRootDisks(config);
  if (named.length === 1 && named[0] === options.diskId) return "matches";
  const foreign = named.filter((id) => id !== 0 && id !== options.diskId);
  if (foreign.length > 0)
    // A per-host release for another unit: `rtr7 recover` refuses it before
    // serving, so this is a boot.img named on its own. It would not boot.
    throw new Rtr7Error(
      "RTR7_ERR_BOOT_CONFIG",
      `boot.img's syslinux.cfg names disk ${foreign.map(hex).join(", ")}, not this one (${hex(options.diskId)}): it was built for another unit`,
      {
        hint: "Recover with images built for this hostname, or a fleet release (`rtr7 image build` without --hostname).",
      },
    );
  await writeBootConfigSector({
    path: options.disk,
    partitionOffset: options.partitionOffset,
    sector,
    config: withConfigRootDisk(config, options.diskId),
    ...(options.device ? { device: options.device } : {}),
  });
  say(
    `syslinux.cfg: root slots named on this disk (${hex(options.diskId)}), one sector rewritten and verified`,
  );
  return "rewritten";
}
