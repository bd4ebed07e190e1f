// `rtr7 keys init`: makes the fleet's Ed25519 signing key. The work is in
// updates/keys.ts; an existing key is never overwritten.
import { Rtr7Command } from "../../base.js";

export default class KeysInit extends Rtr7Command {
  static override summary = "Make the fleet's signing key (never overwrites one).";

  static override description = `Makes an Ed25519 key pair in $XDG_CONFIG_HOME/rtr7/keys/: signing.key (the secret
key, mode 0600, in a 0700 directory) and signing.pub (the public key in minisign's format).
From then on \`rtr7 image build\`, \`rtr7 safe-update\` and \`rtr7 fleet update\` sign every
release's manifest.json, \`rtr7 recover\` installs the public key into a unit that trusts
none, and a unit that trusts it refuses anything it did not sign. Keep a backup of the
directory: without the key, units that trust it take updates only after a recovery with
\`--new-key\`. Refuses to run when a key is there already (use \`rtr7 keys rotate\`).`;

  static override examples = [
    { description: "Make the key, once per fleet:", command: "<%= config.bin %> keys init" },
  ];

  async run(): Promise<void> {
    const { flags } = await this.parse(KeysInit);
    const log = this.makeLogger(flags);
    const { initKeys, keysDir } = await import("../../../updates/keys.js");
    const dir = keysDir();
    const key = await initKeys(dir);
    log.info(
      { event: "key", action: "made", keyId: key.keyId, dir },
      `Made signing key ${key.keyId} in ${dir} (public key: ${dir}/signing.pub). Keep a backup of ${dir}.`,
    );
  }
}
