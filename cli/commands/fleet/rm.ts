// `rtr7 fleet rm`: removes a unit from the inventory. The work is in
// updates/fleet/inventory.ts (an atomic rewrite of the file). Removing a unit
// the inventory does not hold is an error (exit 1, RTR7_ERR_INVENTORY): a
// typo in a script should not pass for a removal.
import { Rtr7Error } from "../../../lib/errors.js";
import { Rtr7Command } from "../../base.js";
import { hostnameArg } from "../../flags.js";

export default class FleetRm extends Rtr7Command {
  static override summary = "Remove a unit from the inventory.";

  static override description = `Removes H's entry from the inventory ($XDG_CONFIG_HOME/rtr7/fleet.json), rewriting the
file atomically. A unit that still announces itself by mDNS stays in \`rtr7 fleet ls\`. Exits 1 when the
inventory holds no entry for H.`;

  static override examples = [
    { description: "Forget shop-7:", command: "<%= config.bin %> fleet rm shop-7" },
  ];

  static override args = {
    hostname: hostnameArg(),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(FleetRm);
    const log = this.makeLogger(flags);
    const { removeInventoryUnit, inventoryFile } = await import("../../../updates/fleet/inventory.js");
    const file = inventoryFile();
    if (!(await removeInventoryUnit(file, args.hostname)))
      throw new Rtr7Error(
        "RTR7_ERR_INVENTORY",
        `remove ${args.hostname} from ${file}: it holds no such unit`,
        {
          hint: "List the inventory's units with `rtr7 fleet ls --no-browse`.",
        },
      );
    log.info(
      { event: "inventory", action: "removed", file, hostname: args.hostname },
      `Removed ${args.hostname} from ${file}.`,
    );
  }
}
