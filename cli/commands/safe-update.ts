// `rtr7 safe-update`: a health-gated update with try-boot, commit and
// automatic rollback. The work is in updates/safe-update.ts.
import { Flags } from "@oclif/core";
import { fileURLToPath } from "node:url";
import { parseDuration } from "../../lib/duration.js";
import { Rtr7Command } from "../base.js";
import {
  allowDowngradeFlag,
  healthTimeoutFlag,
  hostnameFlag,
  interfaceFlag,
  keepOnlyFlag,
  insecureHttpFlag,
  kexecFlag,
  updatesDirFlag,
} from "../flags.js";

export default class SafeUpdate extends Rtr7Command {
  static override summary =
    "Update a unit, try the new version once, commit it when healthy, else roll back.";

  static override description = `Checks the unit is healthy, makes a run directory (timestamped, with stdout.log,
stderr.log and events.jsonl), downloads the unit's /perm backup, builds the images (rtr7 image build,
or --build-command), pushes root, boot and mbr (each verified by the hash the unit replies), then
reboots the unit into the new slot once (testboot + kexec) while its boot loader still names the old
one. When the unit reports healthy on the new version, the new slot is committed and the run gets a
recover.bash for a manual rollback. Anything else rolls back: a unit that answers is rebooted into its
committed slot; one that does not falls back by itself; one still silent is recovered over PXE with
the last known-good images and the backup just taken. The exit is non-zero with what failed and the
version the unit runs now.

The password is RTR7_PASSWORD, else gokrazy's ~/.config/gokrazy/hosts/HOST/http-password.txt or
~/.config/gokrazy/http-password.txt; it never appears in a URL, a log or an event. A unit whose TLS
certificate is pinned in the inventory ($XDG_CONFIG_HOME/rtr7/fleet.json, by rtr7 recover or the first
contact) is reached over HTTPS only, and one presenting another certificate is sent nothing
(RTR7_ERR_UNIT_CERT_CHANGED; rtr7 fleet trust HOST accepts it).`;

  static override examples = [
    {
      description: "Update router7 with the bundled suite:",
      command: "<%= config.bin %> safe-update --hostname router7",
    },
    {
      description:
        "Build with your own command (it writes mbr.img, boot.img and root.img into $RTR7_OUT_DIR):",
      command:
        "<%= config.bin %> safe-update --hostname router7 --build-command 'make images OUT=$RTR7_OUT_DIR'",
    },
    {
      description: "Reach the unit by address, wait up to 5 minutes for it, print JSON events:",
      command:
        "<%= config.bin %> safe-update --hostname router7 --address 10.0.0.1 --health-timeout 5m --json",
    },
  ];

  static override flags = {
    hostname: hostnameFlag(),
    address: Flags.string({
      description: "Reach the unit at this address instead of its hostname.",
      helpValue: "ADDR",
    }),
    "updates-dir": updatesDirFlag("Where runs are kept"),
    port: Flags.integer({ description: "The unit's update API port.", default: 80, min: 1, max: 65535 }),
    release: Flags.directory({
      description:
        "Install this release (made by `rtr7 image build`, with or without --hostname) instead of building one.",
      exists: true,
      helpValue: "DIR",
      exclusive: ["build-command"],
    }),
    "build-command": Flags.string({
      description:
        "Build with this shell command instead of rtr7 image build; RTR7_OUT_DIR (and GOKR_DIR) name the run directory.",
      helpValue: "CMD",
    }),
    "keep-only": keepOnlyFlag(),
    "health-timeout": healthTimeoutFlag(),
    kexec: kexecFlag(),
    "allow-downgrade": allowDowngradeFlag(),
    "insecure-http": insecureHttpFlag(),
    "trial-deadline": Flags.string({
      description:
        "How long the unit runs the new slot uncommitted before falling back by itself (default: --health-timeout + 45s).",
      helpValue: "DURATION",
    }),
    interface: interfaceFlag("The interface facing the unit, for the last-resort recovery over PXE."),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(SafeUpdate);
    let runLog: NodeJS.WritableStream | undefined;
    // Every line also goes into the run's stdout.log once the run exists.
    const log = this.makeLogger(flags, {
      write(line: string) {
        process.stdout.write(line);
        runLog?.write(line);
      },
    });
    const healthTimeoutMs = parseDuration(flags["health-timeout"], "--health-timeout");
    const [{ safeUpdate }, { openUnit }, { updatePassword }, { defaultUpdatesDir }, { progressView }] =
      await Promise.all([
        import("../../updates/safe-update.js"),
        import("../../updates/client/index.js"),
        import("../../updates/credentials.js"),
        import("../../updates/runs.js"),
        import("../progress.js"),
      ]);
    const release = flags.release
      ? await (await import("../../updates/release.js")).loadRelease(flags.release)
      : undefined;
    const { keysDir, rotationStatements } = await import("../../updates/keys.js");
    const signing = await (await import("../../updates/release-signing.js")).loadRunSigning(keysDir());
    const { password, source } = await updatePassword(flags.hostname);
    log.debug({ source }, `Update API password from ${source}.`);
    const { unitConnection } = await import("../../updates/client/unit-connection.js");
    const { inventoryFile } = await import("../../updates/fleet/inventory.js");
    const endpoint = await unitConnection({
      hostname: flags.hostname,
      address: flags.address,
      port: flags.port,
      inventoryFile: inventoryFile(),
      insecureHttp: flags["insecure-http"],
      log,
    });
    const progress = await progressView({ json: flags.json, log, terminal: process.stdout.isTTY === true });
    try {
      const result = await safeUpdate({
        hostname: flags.hostname,
        unit: () => openUnit(endpoint, { password }, { log }),
        updatesDir: flags["updates-dir"] ?? defaultUpdatesDir(),
        buildCommand: flags["build-command"],
        release,
        signing,
        rotations: await rotationStatements(keysDir()),
        allowDowngrade: flags["allow-downgrade"],
        keepOnly: flags["keep-only"],
        healthTimeoutMs,
        kexec: flags.kexec,
        trialDeadlineMs: flags["trial-deadline"]
          ? parseDuration(flags["trial-deadline"], "--trial-deadline")
          : undefined,
        // recover.bash runs this very CLI.
        recoverScript: {
          node: process.execPath,
          entry: fileURLToPath(new URL("../../../bin/run.js", import.meta.url)),
        },
        recoverSettings: flags.interface ? { interfaceName: flags.interface } : {},
        log,
        onRun: (run) => {
          runLog = run.stdout;
        },
        onStep: (step) => log.debug({ event: "step", step }, `step ${step}`),
        onProgress: (report) => progress.update({ step: "push", ...report }),
      });
      if (flags.json) process.stdout.write(JSON.stringify({ event: "updated", ...result }) + "\n");
    } finally {
      progress.stop();
    }
  }
}
