// Mounting /perm on the unit with the options the power-cut safety of the
// unit's state relies on (lib/wire/perm-filesystem.ts: journal, data=ordered,
// barriers). A /perm that refuses them (an ext4 made without a journal: not
// by rtr7, whose recovery always makes one) is mounted as before, without
// options, and the unit says that a cut may then lose or tear its state:
// refusing to mount it would leave the unit without its password and
// addresses, which is worse.
import { permMountOptions } from "../lib/wire/perm-filesystem.js";

/** Runs busybox mount with these arguments; rejects when the mount fails. */
export type MountCommand = (args: string[]) => Promise<unknown>;

export async function mountUnitPerm(
  device: string,
  target: string,
  mount: MountCommand,
  say: (line: string) => void,
): Promise<void> {
  try {
    await mount(["-t", "ext4", "-o", permMountOptions, device, target]);
    return;
  } catch (error) {
    await mount(["-t", "ext4", device, target]);
    say(
      `/perm mounted without -o ${permMountOptions}, which it refused (${(error as Error).message}; ` +
        `an ext4 without a journal does): a power cut may lose or tear the unit's state`,
    );
  }
}
