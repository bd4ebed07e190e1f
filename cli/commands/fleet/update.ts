// `rtr7 fleet update`: one release, built once, rolled out in stages to the
// units mDNS and the inventory know (--select). The work is in
// updates/fleet/ (the engine, the store, the push driver); this command
// turns flags into a recorded rollout and hands it to cli/fleet-run.ts.
import { Flags } from "@oclif/core";
import path from "node:path";
import { parseDuration } from "../../../lib/duration.js";
import { Rtr7Error } from "../../../lib/errors.js";
import { Rtr7Command } from "../../base.js";
import {
  allowDowngradeFlag,
  healthTimeoutFlag,
  insecureHttpFlag,
  interfaceFlag,
  keepOnlyFlag,
  kexecFlag,
  pollFlag,
  updatesDirFlag,
} from "../../flags.js";

/** "0.1" or "10%": a fraction between 0 and 1. */
function parseRate(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(%?)$/.exec(text.trim());
  const value = match ? Number(match[1]) / (match[2] === "%" ? 100 : 1) : Number.NaN;
  if (!(value >= 0 && value <= 1))
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `--max-failure-rate ${JSON.stringify(text)}: want a fraction (0.1) or a percentage (10%)`,
    );
  return value;
}

export default class FleetUpdate extends Rtr7Command {
  static override summary =
    "Roll one release out to many units in stages: canary, waves, soak, halt on failures.";

  static override description = `Each unit goes through safe-update's steps (health, backup, push, try-boot, soak,
commit, and rollback on failure), with its run directory (backup, logs, recover.bash) kept
as safe-update keeps it. The units are put in hostname order: the first --canary units go
first, then waves of at most --parallel units at once; a wave starts when every unit of
the one before has stayed healthy on the new version for --soak (on trial: a unit that
fails its soak falls back by itself). Once more units fail than --max-failures (or
--max-failure-rate of the rollout's units) allow, no further unit starts; the running ones
finish or roll back and the rollout ends halted. A unit that is unreachable, unhealthy or
on trial before its turn is skipped, not failed. The rollout's state is kept in the
updates directory's fleet.sqlite: \`rtr7 fleet status\` shows it and \`rtr7 fleet resume\`
carries on after a halt or a kill. Without --release, the release is built once with
\`rtr7 image build\` (no hostname: one build for every unit).`;

  static override examples = [
    {
      description: "Roll a fleet release out, one canary then two units at a time:",
      command: "<%= config.bin %> fleet update --release ./build --canary 1 --parallel 2",
    },
    {
      description: "Only the shop units, halting at the first failure, each soaking 5 minutes:",
      command:
        "<%= config.bin %> fleet update --release ./build --select 'shop-*' --max-failures 0 --soak 5m",
    },
  ];

  static override flags = {
    "allow-downgrade": allowDowngradeFlag(),
    release: Flags.directory({
      description:
        "A release made by `rtr7 image build` (mbr.img, boot.img, root.img, manifest.json) [default: build one now].",
      exists: true,
      helpValue: "DIR",
    }),
    select: Flags.string({
      description: "Hostname glob of the units to update.",
      default: "*",
      helpValue: "GLOB",
    }),
    canary: Flags.integer({ description: "Units in the first wave, alone.", default: 1, min: 0 }),
    parallel: Flags.integer({ description: "Units per wave after the canary.", default: 4, min: 1 }),
    "max-failures": Flags.integer({
      description: "Failed units the rollout tolerates; one more halts it.",
      default: 0,
      min: 0,
    }),
    "max-failure-rate": Flags.string({
      description: "Instead of --max-failures: the share of the rollout's units that may fail (0.1 or 10%).",
      helpValue: "P",
    }),
    soak: Flags.string({
      description: "How long a unit must stay healthy on the new version before it counts as done.",
      default: "2m",
      helpValue: "DURATION",
    }),
    "health-timeout": healthTimeoutFlag(),
    kexec: kexecFlag(),
    "keep-only": keepOnlyFlag(),
    "updates-dir": updatesDirFlag("Where runs and fleet.sqlite are kept"),
    browse: Flags.boolean({
      description: "Find units by mDNS as well as in the inventory (--no-browse: the inventory only).",
      default: true,
      allowNo: true,
    }),
    timeout: Flags.string({ description: "How long to browse mDNS.", default: "3s", helpValue: "DURATION" }),
    interface: interfaceFlag("Browse mDNS on this interface only [default: every IPv4 interface]."),
    poll: pollFlag(),
    "insecure-http": insecureHttpFlag(),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(FleetUpdate);
    const log = this.makeLogger(flags);
    const soakMs = parseDuration(flags.soak, "--soak");
    const healthTimeoutMs = parseDuration(flags["health-timeout"], "--health-timeout");
    const timeoutMs = parseDuration(flags.timeout, "--timeout");
    const pollMs = parseDuration(flags.poll, "--poll");
    const maxFailureRate =
      flags["max-failure-rate"] !== undefined ? parseRate(flags["max-failure-rate"]) : undefined;
    const [
      { discoverUnits },
      { inventoryFile },
      { defaultUpdatesDir, runTimestamp },
      { openFleetStore, fleetStoreFile },
      { loadRelease },
      { createRollout, selectUnits },
      { driveRollout },
    ] = await Promise.all([
      import("../../../updates/fleet/discover.js"),
      import("../../../updates/fleet/inventory.js"),
      import("../../../updates/runs.js"),
      import("../../../updates/fleet/store.js"),
      import("../../../updates/release.js"),
      import("../../../updates/fleet/rollout.js"),
      import("../../fleet-run.js"),
    ]);
    const updatesDir = path.resolve(flags["updates-dir"] ?? defaultUpdatesDir());
    let releaseDir = flags.release;
    if (releaseDir === undefined) {
      const { buildUnitImages } = await import("../../../updates/image/build.js");
      releaseDir = path.join(updatesDir, "releases", runTimestamp(new Date()));
      log.info(`Building a fleet release (no hostname) into ${releaseDir}.`);
      await buildUnitImages({ outDir: releaseDir, log });
    }
    const release = await loadRelease(releaseDir);
    const known = await discoverUnits({
      inventoryFile: inventoryFile(),
      browse: flags.browse,
      timeoutMs,
      interfaceName: flags.interface,
      log,
    });
    const chosen = selectUnits(known, flags.select);
    const fitting = release.anyUnit ? chosen : chosen.filter((unit) => unit.hostname === release.hostname);
    if (fitting.length < chosen.length)
      log.warn(
        `The release was built for ${release.hostname ?? "?"} only: leaving out ${chosen.length - fitting.length} other unit(s). Build without --hostname for every unit.`,
      );
    const store = openFleetStore(fleetStoreFile(updatesDir));
    try {
      const rolloutId = createRollout({
        store,
        release,
        units: fitting.map((unit) => ({ hostname: unit.hostname, address: unit.address, port: unit.port })),
        settings: {
          select: flags.select,
          canary: flags.canary,
          parallel: flags.parallel,
          maxFailures: flags["max-failures"],
          maxFailureRate,
          soakMs,
          healthTimeoutMs,
          kexec: flags.kexec,
          ...(flags["allow-downgrade"] ? { allowDowngrade: true } : {}),
        },
      });
      const units = store.units(rolloutId);
      log.info(
        {
          event: "rollout-start",
          id: rolloutId,
          version: release.version,
          release: release.dir,
          units: units.map((unit) => unit.hostname),
          waves: Math.max(0, ...units.map((unit) => unit.wave)) + 1,
        },
        `Rollout ${rolloutId}: ${release.version} to ${units.length} unit(s) in ${Math.max(0, ...units.map((unit) => unit.wave)) + 1} wave(s).`,
      );
      await driveRollout({
        store,
        rolloutId,
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
