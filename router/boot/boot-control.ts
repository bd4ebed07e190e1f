// Which root slot the unit boots: the interface the update API drives
// (switch, testboot, commit, reboot). The implementation keeps the
// committed slot as syslinux.cfg's DEFAULT on the boot partition (one
// sector, rewritten in place: lib/wire/boot-config.ts) and reaches a slot
// on trial only by kexec, so anything that goes wrong in a trial (a
// panic, an init that exits, a missed commit deadline, a power cut) ends in
// a real boot of the committed slot.
import { readFile } from "node:fs/promises";
import { removeDurably, writeFileAtomically } from "../../lib/atomic-file.js";
import path from "node:path";
import { Rtr7Error } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import type { Slot, UnitPaths } from "../unit.js";
import { readBootConfig, writeBootConfig } from "./boot-partition.js";

export interface RebootOptions {
  /** Start the next kernel with kexec (default) instead of through the firmware. */
  kexec: boolean;
}

export interface BootControl {
  /** The slot running now, and whether it is on trial (not yet committed). */
  running(): { slot: Slot; trial: boolean };
  /** The slot syslinux.cfg's DEFAULT names. */
  committedSlot(): Promise<Slot>;
  /** POST /update/switch: `slot` becomes the default for good. */
  switchTo(slot: Slot): Promise<void>;
  /** POST /update/testboot: the next reboot runs `slot` once, on trial. */
  testboot(slot: Slot, options?: { deadlineMs?: number }): Promise<void>;
  /** POST /update/commit: the running slot becomes the default; the trial ends. */
  commit(): Promise<Slot>;
  /** Throws (RTR7_ERR_UPDATE_REQUEST) when a reboot with these options cannot be done; the API asks before it replies. */
  checkReboot(options: RebootOptions): Promise<void>;
  /** POST /reboot: stops the services, unmounts /perm, reboots (returns once the reboot is under way). */
  reboot(options: RebootOptions): Promise<void>;
  /**
   * After PUT /update/boot or /update/bootonly replaced the boot partition:
   * rewrites its DEFAULT to `committed` (what it named before the upload), so
   * a new boot image never changes which slot boots.
   */
  keepDefault(committed: Slot): Promise<void>;
}

/** What the next boot runs: handed to the platform (kexec on a unit, the lab's loop in process mode). */
export interface NextBoot {
  slot: Slot;
  /** A one-shot run of an uncommitted slot. */
  trial: boolean;
  /** How long the trial may run uncommitted before the unit reboots into the committed slot. */
  trialDeadlineMs?: number;
  kexec: boolean;
}

/** Stops the services and reboots into `next`; resolves once that is under way. */
export type Rebooter = (next: NextBoot) => Promise<void>;

export const defaultTrialDeadlineMs = 10 * 60 * 1000;

/** The committed slot lives in syslinux.cfg; a trial is reached only by kexec. */
export class SyslinuxBootControl implements BootControl {
  private pending: { slot: Slot; deadlineMs: number } | undefined;
  private trial: boolean;

  constructor(
    private readonly options: {
      paths: UnitPaths;
      slot: Slot;
      trial: boolean;
      rebooter: Rebooter;
      log: Logger;
      /** Called when a trial ends by commit (the supervisor cancels its deadline). */
      onCommit?: () => void;
    },
  ) {
    this.trial = options.trial;
  }

  running(): { slot: Slot; trial: boolean } {
    return { slot: this.options.slot, trial: this.trial };
  }

  async committedSlot(): Promise<Slot> {
    return (await readBootConfig(this.options.paths.boot)).defaultSlot;
  }

  private async setDefault(slot: Slot): Promise<void> {
    const { boot } = this.options.paths;
    const config = await readBootConfig(boot);
    if (config.defaultSlot === slot) return;
    await writeBootConfig(
      boot,
      { ...config, defaultSlot: slot },
      {
        warn: (message) => this.options.log.warn(message),
      },
    );
  }

  async switchTo(slot: Slot): Promise<void> {
    await this.setDefault(slot);
    this.pending = undefined;
    this.options.log.info({ slot }, `Switched: slot ${slot} is now the default boot.`);
  }

  testboot(slot: Slot, options: { deadlineMs?: number } = {}): Promise<void> {
    const deadlineMs = options.deadlineMs ?? defaultTrialDeadlineMs;
    this.pending = { slot, deadlineMs };
    this.options.log.info(
      { slot, deadlineMs },
      `The next reboot runs slot ${slot} once, on trial; without a commit within ${Math.round(deadlineMs / 1000)} s it falls back.`,
    );
    return Promise.resolve();
  }

  async commit(): Promise<Slot> {
    const { slot } = this.options;
    this.options.log.info({ slot }, `committing slot ${slot}: its DEFAULT line is one sector write`);
    await this.setDefault(slot);
    this.trial = false;
    this.pending = undefined;
    await removeDurably(trialRecordPath(this.options.paths));
    this.options.onCommit?.();
    this.options.log.info({ slot }, `Committed: slot ${slot} is now the default boot.`);
    return slot;
  }

  async checkReboot(options: RebootOptions): Promise<void> {
    await this.nextBoot(options);
  }

  async reboot(options: RebootOptions): Promise<void> {
    const next = await this.nextBoot(options);
    if (next.trial) await writeTrialRecord(this.options.paths, next);
    await this.options.rebooter(next);
  }

  private async nextBoot(options: RebootOptions): Promise<NextBoot> {
    const pending = this.pending;
    if (pending && !options.kexec) {
      throw new Rtr7Error(
        "RTR7_ERR_UPDATE_REQUEST",
        `reboot with kexec=off: slot ${pending.slot} is waiting for a one-shot trial boot, which needs kexec ` +
          `(the boot loader only ever boots the committed slot)`,
        { hint: "Reboot with kexec (the default), or use POST /update/switch for a permanent change." },
      );
    }
    return pending
      ? { slot: pending.slot, trial: true, trialDeadlineMs: pending.deadlineMs, kexec: true }
      : { slot: await this.committedSlot(), trial: false, kexec: options.kexec };
  }

  async keepDefault(committed: Slot): Promise<void> {
    await this.setDefault(committed);
  }
}

interface TrialRecord {
  slot: Slot;
  startedAt: string;
  deadlineMs: number;
}

// The trial record (<perm>/rtr7/trial.json) is written atomically (temp
// file, fsync, rename, directory fsync) and removed durably (unlink, then
// directory fsync), so a power cut leaves the old record or the new (for a
// removal: the record or none), never a torn one. Once a removal has
// returned it stays done; a cut before that only makes the next boot settle
// the record again (after a commit: nothing to report; after a rollback:
// reported twice).
function trialRecordPath(paths: UnitPaths): string {
  return path.join(paths.perm, "rtr7", "trial.json");
}

async function writeTrialRecord(paths: UnitPaths, next: NextBoot): Promise<void> {
  const file = trialRecordPath(paths);
  const record: TrialRecord = {
    slot: next.slot,
    startedAt: new Date().toISOString(),
    deadlineMs: next.trialDeadlineMs ?? defaultTrialDeadlineMs,
  };
  await writeFileAtomically(file, JSON.stringify(record) + "\n", { makeDirectory: true });
}

/**
 * At boot: whether the previous boot was a trial that ended without a commit
 * (the unit is back on another slot). Clears the record unless the unit runs
 * that trial now.
 */
export async function settleTrialRecord(
  paths: UnitPaths,
  running: { slot: Slot; trial: boolean },
): Promise<{ rolledBackFrom?: Slot }> {
  const file = trialRecordPath(paths);
  let record: TrialRecord;
  try {
    record = JSON.parse(await readFile(file, "utf8")) as TrialRecord;
  } catch {
    return {};
  }
  if (running.trial && record.slot === running.slot) return {};
  await removeDurably(file);
  return record.slot !== running.slot ? { rolledBackFrom: record.slot } : {};
}
