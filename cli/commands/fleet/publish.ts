// `rtr7 fleet publish DIR`: uploads a signed release to `rtr7 fleet serve`.
// The work is in updates/fleet/serve/workstation.ts.
import { Args } from "@oclif/core";
import { Rtr7Command } from "../../base.js";
import { fleetServerFlags } from "../../flags.js";

export default class FleetPublish extends Rtr7Command {
  static override summary = "Upload a signed release to a fleet server (rtr7 fleet serve).";

  static override description = `Checks the release here first (every image against manifest.json, and signed: an
unsigned one is refused before anything is sent), then uploads each file over HTTPS, the server's
certificate checked against the fingerprint in the credential file, and publishes it: the server
checks it again (signed by a key in its DATA/trusted-keys/) and serves it at /releases/VERSION/.`;

  static override examples = [
    {
      description: "Publish a release built with `rtr7 image build` after `rtr7 keys init`:",
      command: "<%= config.bin %> fleet publish ./release --server https://fleet.example:8443",
    },
  ];

  static override args = {
    dir: Args.directory({ description: "The release directory.", required: true, exists: true }),
  };

  static override flags = {
    ...fleetServerFlags,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(FleetPublish);
    const log = this.makeLogger(flags);
    const { defaultServerCredentialFile, publishRelease, serverAccess } =
      await import("../../../updates/fleet/serve/workstation.js");
    const server = await serverAccess(flags.credential ?? defaultServerCredentialFile(), flags.server);
    const published = await publishRelease(args.dir, server, log);
    log.info(
      { event: "published", version: published.version, key: published.keyId, server: server.url },
      `Published ${published.version} (signed by ${published.keyId}) on ${server.url}.`,
    );
  }
}
