// `rtr7 fleet status [ROLLOUT]`: where a rollout stands or how it ended,
// read from the updates directory's fleet.sqlite; the latest without an
// argument. A rollout whose CLI died shows as "interrupted".
import { Args } from "@oclif/core";
import path from "node:path";
import { Rtr7Error } from "../../../lib/errors.js";
import { Rtr7Command } from "../../base.js";
import { updatesDirFlag } from "../../flags.js";

export default class FleetStatus extends Rtr7Command {
  static override summary = "Show where a rollout stands, or how it ended.";

  static override description = `Shows a rollout's state (running, interrupted, halted or finished), its release
and settings, and one row per unit: from → to, result, time and the reason it failed or was
skipped. Without ROLLOUT, the latest. With --json: a "rollout" event and one "unit" event per
unit.`;

  static override examples = [
    { description: "The latest rollout:", command: "<%= config.bin %> fleet status" },
    {
      description: "One rollout, for a script:",
      command: "<%= config.bin %> fleet status 2026-11-29T22-40-00Z-3fa2 --json",
    },
  ];

  static override args = {
    rollout: Args.string({ description: "The rollout's id [default: the latest]." }),
  };

  static override flags = {
    "updates-dir": updatesDirFlag("Where runs and fleet.sqlite are kept"),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(FleetStatus);
    const log = this.makeLogger(flags);
    const [{ defaultUpdatesDir }, { openFleetStore, fleetStoreFile }, rollouts] = await Promise.all([
      import("../../../updates/runs.js"),
      import("../../../updates/fleet/store.js"),
      import("../../../updates/fleet/rollout.js"),
    ]);
    const store = openFleetStore(fleetStoreFile(path.resolve(flags["updates-dir"] ?? defaultUpdatesDir())));
    try {
      const rollout = args.rollout ? store.requireRollout(args.rollout) : store.latestRollout();
      if (!rollout)
        throw new Rtr7Error(
          "RTR7_ERR_ROLLOUT_NOT_FOUND",
          `no rollout has been recorded in ${store.file} yet`,
          {
            hint: "Start one with `rtr7 fleet update`.",
          },
        );
      const units = store.units(rollout.id);
      const headline = rollouts.rolloutHeadline(rollout, units);
      if (flags.json) {
        log.info(
          {
            event: "rollout",
            id: rollout.id,
            state: rollouts.rolloutState(rollout),
            version: rollout.version,
            release: rollout.releaseDir,
            createdAt: rollout.createdAt,
            finishedAt: rollout.finishedAt,
            reason: rollout.reason,
            settings: rollout.settings,
            ...rollouts.rolloutCounts(units),
          },
          headline,
        );
        for (const unit of units) log.info({ event: "unit", ...unit }, `${unit.hostname}: ${unit.state}`);
        return;
      }
      process.stdout.write(
        `${headline}\nrelease ${rollout.releaseDir}, started ${rollout.createdAt}\n\n${rollouts.formatRolloutTable(rollout, units)}\n`,
      );
    } finally {
      store.close();
    }
  }
}
