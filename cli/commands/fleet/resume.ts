// `rtr7 fleet resume ROLLOUT`: carries on a halted or killed rollout with
// the settings and the release it was started with (checked again against
// its manifest). Units that were in the middle of their update are first
// brought to a committed slot; finished units are never updated again.
import { Args } from "@oclif/core";
import path from "node:path";
import { parseDuration } from "../../../lib/duration.js";
import { Rtr7Error } from "../../../lib/errors.js";
import { Rtr7Command } from "../../base.js";
import { insecureHttpFlag, keepOnlyFlag, pollFlag, updatesDirFlag } from "../../flags.js";

export default class FleetResume extends Rtr7Command {
  static override summary = "Carry on a halted or interrupted rollout.";

  static override description = `Reads the rollout from the updates directory's fleet.sqlite and runs it on with
the settings and release it was started with. A unit that was in the middle of its update
when the rollout stopped is first brought to a committed slot (rebooted out of its trial,
or given the time its trial needs to fall back by itself); if it already runs the release,
committed, it counts as done. Units that succeeded, failed or were skipped are not updated
again; failures from before the resume do not count against --max-failures again.`;

  static override examples = [
    {
      description: "Carry on the rollout a killed CLI left:",
      command: "<%= config.bin %> fleet resume 2026-11-29T22-40-00Z-3fa2",
    },
  ];

  static override args = {
    rollout: Args.string({ description: "The rollout's id (see `rtr7 fleet status`).", required: true }),
  };

  static override flags = {
    "updates-dir": updatesDirFlag("Where runs and fleet.sqlite are kept"),
    "keep-only": keepOnlyFlag(),
    poll: pollFlag(),
    "insecure-http": insecureHttpFlag(),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(FleetResume);
    const log = this.makeLogger(flags);
    const pollMs = parseDuration(flags.poll, "--poll");
    const [
      { defaultUpdatesDir },
      { openFleetStore, fleetStoreFile },
      { loadRelease },
      { rolloutState },
      { driveRollout },
    ] = await Promise.all([
      import("../../../updates/runs.js"),
      import("../../../updates/fleet/store.js"),
      import("../../../updates/release.js"),
      import("../../../updates/fleet/rollout.js"),
      import("../../fleet-run.js"),
    ]);
    const updatesDir = path.resolve(flags["updates-dir"] ?? defaultUpdatesDir());
    const store = openFleetStore(fleetStoreFile(updatesDir));
    try {
      const rollout = store.requireRollout(args.rollout);
      const state = rolloutState(rollout);
      if (state === "running")
        throw new Rtr7Error(
          "RTR7_ERR_USAGE",
          `rollout ${rollout.id} is running (process ${rollout.pid ?? "?"}); resume it only once that process has ended`,
        );
      if (state === "finished") {
        log.info(
          { event: "rollout-finished", id: rollout.id },
          `Rollout ${rollout.id} has finished: nothing to resume.`,
        );
        return;
      }
      const release = await loadRelease(rollout.releaseDir);
      if (release.version !== rollout.version)
        throw new Rtr7Error(
          "RTR7_ERR_RELEASE",
          `the release in ${rollout.releaseDir} is now ${release.version}, but rollout ${rollout.id} installs ${rollout.version}`,
        );
      log.info(
        { event: "rollout-resume", id: rollout.id, was: state },
        `Resuming rollout ${rollout.id} (${state}).`,
      );
      await driveRollout({
        store,
        rolloutId: rollout.id,
        release,
        updatesDir,
        keepOnly: flags["keep-only"],
        log,
        json: flags.json,
        pollMs,
        insecureHttp: flags["insecure-http"],
      });
    } finally {
      store.close();
    }
  }
}
