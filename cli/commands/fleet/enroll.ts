// `rtr7 fleet enroll H`: a new credential for unit H on `rtr7 fleet
// serve`, as the content of the unit's /perm/rtr7/uplink.json. The work is
// in updates/fleet/serve/workstation.ts.
import { Flags } from "@oclif/core";
import { writeFileAtomically } from "../../../lib/atomic-file.js";
import { Rtr7Command } from "../../base.js";
import { hostnameArg, fleetServerFlags } from "../../flags.js";

export default class FleetEnroll extends Rtr7Command {
  static override summary =
    "Enroll a unit with a fleet server: its uplink.json (broker, credential, server fingerprint).";

  static override description = `Asks the server for a new credential for H (any earlier one stops working) and
prints the unit's /perm/rtr7/uplink.json, or writes it to --out (mode 0600): the broker's
mqtts:// URL, the unit's user name and password, and the server certificate's fingerprint the
unit pins. Put it on the unit's /perm (for now by hand; over the LAN through the update API later).`;

  static override examples = [
    {
      description: "Enroll shop-7 and keep its uplink.json:",
      command:
        "<%= config.bin %> fleet enroll shop-7 --server https://fleet.example:8443 --out ./shop-7-uplink.json",
    },
  ];

  static override args = {
    hostname: hostnameArg(),
  };

  static override flags = {
    ...fleetServerFlags,
    out: Flags.string({
      description: "Write uplink.json here (0600) instead of printing it.",
      helpValue: "FILE",
    }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(FleetEnroll);
    const log = this.makeLogger(flags);
    const { defaultServerCredentialFile, enrollAtServer, serverAccess } =
      await import("../../../updates/fleet/serve/workstation.js");
    const server = await serverAccess(flags.credential ?? defaultServerCredentialFile(), flags.server);
    const uplink = await enrollAtServer(args.hostname, server);
    const text = JSON.stringify(uplink, null, 2) + "\n";
    if (flags.out === undefined) {
      process.stdout.write(text);
      return;
    }
    await writeFileAtomically(flags.out, text, { mode: 0o600 });
    log.info(
      { event: "enrolled", hostname: args.hostname, out: flags.out },
      `Enrolled ${args.hostname}: its uplink.json is ${flags.out} (holds its password).`,
    );
  }
}
