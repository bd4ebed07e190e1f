// `rtr7 fleet trust H`: accepts the TLS certificate H presents now, on
// purpose, as its pin in the inventory (after a replaced unit or a new
// /perm, when every connection is refused with RTR7_ERR_UNIT_CERT_CHANGED).
// The work is in updates/client/unit-connection.ts (trustUnit).
import { Flags } from "@oclif/core";
import { Rtr7Command } from "../../base.js";
import { hostnameArg } from "../../flags.js";

export default class FleetTrust extends Rtr7Command {
  static override summary =
    "Pin the TLS certificate a unit presents now (after you changed the unit on purpose).";

  static override description = `Connects to H's HTTPS port (443), reads the certificate it presents (sending nothing
but the TLS handshake), prints the pinned fingerprint and the new one, and records the new one in the
inventory ($XDG_CONFIG_HOME/rtr7/fleet.json; H's other fields are kept, and H gets an entry if it had
none). Check the new fingerprint against the unit's own first (on its console: openssl x509 -noout
-fingerprint -sha256 -in /perm/rtr7/tls/cert.pem): whatever answers at H's address is trusted from now on.`;

  static override examples = [
    { description: "Accept router7's new certificate:", command: "<%= config.bin %> fleet trust router7" },
    {
      description: "Reach it at an address, print JSON:",
      command: "<%= config.bin %> fleet trust shop-7 --address 10.2.0.7 --json",
    },
  ];

  static override args = {
    hostname: hostnameArg(),
  };

  static override flags = {
    address: Flags.string({
      description: "Reach the unit at this address [default: its inventory address, else its hostname].",
      helpValue: "ADDR",
    }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(FleetTrust);
    const log = this.makeLogger(flags);
    const [{ trustUnit }, { inventoryFile }] = await Promise.all([
      import("../../../updates/client/unit-connection.js"),
      import("../../../updates/fleet/inventory.js"),
    ]);
    const file = inventoryFile();
    const trusted = await trustUnit({ hostname: args.hostname, address: flags.address, inventoryFile: file });
    log.info(
      { event: "trusted", file, ...trusted, previous: trusted.previous ?? null },
      `${trusted.hostname} (${trusted.address}): ${trusted.previous ?? "no pin"} → ${trusted.current}, recorded in ${file}`,
    );
  }
}
