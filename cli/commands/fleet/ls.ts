// `rtr7 fleet ls`: every unit the workstation knows (mDNS and the inventory)
// with its version, slot, trial and health. The work is in
// updates/fleet/discover.ts (who) and updates/fleet/survey.ts (how each is).
import { Flags } from "@oclif/core";
import { parseDuration } from "../../../lib/duration.js";
import { Rtr7Command } from "../../base.js";
import { insecureHttpFlag, interfaceFlag, updatesDirFlag } from "../../flags.js";

export default class FleetLs extends Rtr7Command {
  static override summary = "List the units on the LAN (mDNS) and in the inventory, with version and health.";

  static override description = `Browses mDNS for _rtr7._tcp for --timeout, merges in the inventory file
($XDG_CONFIG_HOME/rtr7/fleet.json, edited by \`rtr7 fleet add\` and \`rtr7 fleet rm\`), and asks each unit
for diagd's /health.json (port 7733, 2 s at most). Shows hostname, address, version, slot, trial,
health (healthy, the unit's first error, or "no answer") and when it last answered; answers are kept in
the updates directory's fleet.sqlite. When mDNS and the inventory both know a unit, the address mDNS
answered from is used. A unit whose TLS certificate is pinned is asked over HTTPS (7734); the first
contact with one that serves HTTPS pins its certificate in the inventory. Exit 0 even when units do not answer: the table says which.`;

  static override examples = [
    { description: "List the fleet:", command: "<%= config.bin %> fleet ls" },
    {
      description: "Only the inventory, one JSON event per unit and a summary:",
      command: "<%= config.bin %> fleet ls --no-browse --json",
    },
    {
      description: "Browse longer, on one interface:",
      command: "<%= config.bin %> fleet ls --timeout 10s --interface eth1",
    },
  ];

  static override flags = {
    timeout: Flags.string({ description: "How long to browse mDNS.", default: "3s", helpValue: "DURATION" }),
    browse: Flags.boolean({
      description: "Browse mDNS (--no-browse: the inventory only).",
      default: true,
      allowNo: true,
    }),
    interface: interfaceFlag("Browse mDNS on this interface only [default: every IPv4 interface]."),
    "updates-dir": updatesDirFlag("Where fleet.sqlite keeps when units were last seen"),
    "insecure-http": insecureHttpFlag(),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(FleetLs);
    const log = this.makeLogger(flags);
    const timeoutMs = parseDuration(flags.timeout, "--timeout");
    const [
      { discoverUnits },
      survey,
      { inventoryFile },
      { defaultUpdatesDir },
      { openFleetStore, fleetStoreFile },
    ] = await Promise.all([
      import("../../../updates/fleet/discover.js"),
      import("../../../updates/fleet/survey.js"),
      import("../../../updates/fleet/inventory.js"),
      import("../../../updates/runs.js"),
      import("../../../updates/fleet/store.js"),
    ]);
    const inventory = inventoryFile();
    const units = await discoverUnits({
      inventoryFile: inventory,
      browse: flags.browse,
      timeoutMs,
      interfaceName: flags.interface,
      log,
    });
    const store = openFleetStore(fleetStoreFile(flags["updates-dir"] ?? defaultUpdatesDir()));
    let rows;
    try {
      rows = await survey.surveyUnits(units, {
        store,
        connection: { inventoryFile: inventory, insecureHttp: flags["insecure-http"], log },
      });
    } finally {
      store.close();
    }
    const summary = survey.surveySummary(rows);
    if (flags.json) {
      for (const row of rows)
        log.info({ event: "unit", ...survey.rowEvent(row) }, `${row.hostname}: ${row.health}`);
      log.info(
        { event: "summary", ...summary },
        `${summary.units} units, ${summary.answered} answered, ${summary.healthy} healthy`,
      );
      return;
    }
    if (rows.length === 0) {
      process.stdout.write(
        "No units found: none answered mDNS and the inventory is empty (add one with `rtr7 fleet add`).\n",
      );
      return;
    }
    process.stdout.write(survey.formatFleetTable(rows) + "\n");
    const silent = summary.notAnswering.length;
    process.stdout.write(
      `${summary.units} units: ${summary.healthy} healthy, ${summary.unhealthy} unhealthy, ${silent} not answering.\n`,
    );
  }
}
