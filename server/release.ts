// Which unit a release is for, before a recovery serves it: a fleet release
// (`rtr7 image build` without --hostname) fits any unit, a per-host one only
// the unit it was built for. Two witnesses: the build's manifest.json when
// the images come from its directory, and boot.img's syslinux.cfg, whose
// root= names the disk identifier the build derived from its hostname (0 in
// a fleet release). A release for another unit is refused with
// RTR7_ERR_RELEASE: its boot image would look for another disk, and its
// build.json would name another host. Images that are not rtr7's (no FAT32
// boot partition with a one-sector syslinux.cfg) say nothing and are served
// as they are.
import { readFile } from "node:fs/promises";
import {
  locateBootConfigSector,
  partitionRangeReader,
  readBootConfigSector,
} from "../lib/disk/boot-config-sector.js";
import { Rtr7Error, describeError } from "../lib/errors.js";
import { bootConfigRootDisks } from "../lib/wire/boot-config.js";
import { diskIdentifier } from "../lib/wire/disk-layout.js";
import { parseManifest } from "../lib/wire/manifest.js";

export interface ReleaseKind {
  /** Built for any unit. */
  anyUnit: boolean;
  /** Built for this hostname (per-host); undefined for a fleet release or when nothing says. */
  hostname?: string;
  /** The version its manifest names, when it has one. */
  version?: string;
}

const buildHint = (hostname: string): string =>
  `Build images for this unit (\`rtr7 image build --hostname ${hostname}\`) or a fleet release for any unit (\`rtr7 image build\` without --hostname), and recover with those.`;

/** The disk identifiers boot.img's syslinux.cfg names, or undefined when it is not rtr7's. */
async function bootImageDisks(boot: string): Promise<number[] | undefined> {
  try {
    const read = partitionRangeReader(boot);
    const sector = await locateBootConfigSector(read);
    if (!sector) return undefined;
    return bootConfigRootDisks(await readBootConfigSector(read, sector));
  } catch {
    return undefined;
  }
}

export async function releaseKind(
  images: { boot: string; manifest?: string },
  hostname: string,
): Promise<ReleaseKind> {
  let fromManifest: ReleaseKind | undefined;
  let version: string | undefined;
  if (images.manifest !== undefined) {
    let manifest;
    try {
      manifest = parseManifest(JSON.parse(await readFile(images.manifest, "utf8")));
    } catch (cause) {
      throw new Rtr7Error("RTR7_ERR_MANIFEST", `read ${images.manifest}: ${describeError(cause)}`, { cause });
    }
    if (manifest.hostname !== undefined && manifest.hostname !== hostname && manifest.anyUnit !== true)
      throw new Rtr7Error(
        "RTR7_ERR_RELEASE",
        `${images.manifest}: these images were built for ${manifest.hostname}, not ${hostname}`,
        { hint: buildHint(hostname) },
      );
    if (manifest.anyUnit === true) fromManifest = { anyUnit: true };
    else if (manifest.hostname !== undefined) fromManifest = { anyUnit: false, hostname };
    if (manifest.version !== undefined) version = manifest.version;
  }
  const named = version === undefined ? {} : { version };
  const disks = await bootImageDisks(images.boot);
  if (disks === undefined || disks.length === 0) return { ...(fromManifest ?? { anyUnit: false }), ...named };
  const ours = diskIdentifier(hostname);
  const foreign = disks.filter((id) => id !== 0 && id !== ours);
  if (foreign.length > 0)
    throw new Rtr7Error(
      "RTR7_ERR_RELEASE",
      `${images.boot}: its syslinux.cfg boots the disk ${foreign.map((id) => id.toString(16).padStart(8, "0")).join(", ")}, built for another hostname, not ${hostname} (${ours.toString(16).padStart(8, "0")})`,
      { hint: buildHint(hostname) },
    );
  if (disks.every((id) => id === 0)) return { anyUnit: true, ...named };
  return { anyUnit: false, hostname, ...named };
}
