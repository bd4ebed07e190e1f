// `rtr7 fleet add`: adds a unit to the inventory, or replaces its entry.
// The work is in updates/fleet/inventory.ts (an atomic rewrite of the file).
import { Flags } from "@oclif/core";
import { Rtr7Command } from "../../base.js";
import { diskFlag, hostnameArg, macFlag, rebootorFlag, serialFlag } from "../../flags.js";

export default class FleetAdd extends Rtr7Command {
  static override summary = "Add a unit to the inventory (or replace its entry).";

  static override description = `The inventory ($XDG_CONFIG_HOME/rtr7/fleet.json) lists units by hand: those mDNS cannot find
(on a routed network) and what recovery needs to know about a unit. \`rtr7 fleet ls\` and \`rtr7 fleet update\`
include its units; \`rtr7 recover --hostname H\` takes H's entry as its defaults (MAC lock, rebootor, serial
console, disk). The file is rewritten atomically: a crash leaves the old file or the new one.`;

  static override examples = [
    {
      description: "A unit on a routed network:",
      command: "<%= config.bin %> fleet add shop-7 --address 10.7.0.1",
    },
    {
      description: "With what recovery needs:",
      command:
        "<%= config.bin %> fleet add shop-1 --address 10.1.0.1 --mac 00:0d:b9:aa:bb:cc --rebootor 1234560 --serial /dev/ttyUSB0 --disk sda",
    },
  ];

  static override args = {
    hostname: hostnameArg(),
  };

  static override flags = {
    address: Flags.string({
      description: "How the workstation reaches the unit: an IP address or a resolvable name.",
      required: true,
      helpValue: "ADDR",
    }),
    mac: macFlag(),
    rebootor: rebootorFlag(),
    serial: serialFlag("The unit's serial console (/dev/ttyUSB0)."),
    disk: diskFlag(),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(FleetAdd);
    const log = this.makeLogger(flags);
    const { addInventoryUnit, inventoryFile } = await import("../../../updates/fleet/inventory.js");
    const file = inventoryFile();
    const unit = {
      hostname: args.hostname,
      address: flags.address,
      ...(flags.mac !== undefined && { mac: flags.mac }),
      ...(flags.rebootor !== undefined && { rebootor: flags.rebootor }),
      ...(flags.serial !== undefined && { serial: flags.serial }),
      ...(flags.disk !== undefined && { disk: flags.disk }),
    };
    const replaced = await addInventoryUnit(file, unit);
    log.info(
      { event: "inventory", action: replaced ? "replaced" : "added", file, unit },
      `${replaced ? "Replaced" : "Added"} ${args.hostname} (${flags.address}) in ${file}.`,
    );
  }
}
