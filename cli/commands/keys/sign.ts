// `rtr7 keys sign DIR`: signs a release's manifest.json with the current key
// (a release built before `rtr7 keys init`, or by another tool). The work
// is in updates/keys.ts.
import { Args } from "@oclif/core";
import { Rtr7Command } from "../../base.js";

export default class KeysSign extends Rtr7Command {
  static override summary = "Sign a release's manifest.json with the current key.";

  static override description = `Writes DIR/manifest.json.minisig, signed by the current key, with the release's time
(its manifest's buildTime) in the trusted comment. \`rtr7 image build\` does this by itself once a
key exists; use this for a release built before, or by another tool.`;

  static override examples = [
    { description: "Sign a release:", command: "<%= config.bin %> keys sign ./release" },
  ];

  static override args = {
    dir: Args.directory({
      description: "The release directory (with manifest.json).",
      required: true,
      exists: true,
    }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(KeysSign);
    const log = this.makeLogger(flags);
    const { keysDir, requireSigningKey, signReleaseDir } = await import("../../../updates/keys.js");
    const key = await requireSigningKey(keysDir(), `rtr7 keys sign ${args.dir}`);
    await signReleaseDir(args.dir, key);
    log.info(
      { event: "signed", dir: args.dir, keyId: key.publicKey.keyId },
      `Signed ${args.dir}/manifest.json with key ${key.publicKey.keyId}.`,
    );
  }
}
