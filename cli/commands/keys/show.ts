// `rtr7 keys show`: the fleet's current key, where its public key file is,
// and the keys that came before it. The work is in updates/keys.ts.
import { Rtr7Command } from "../../base.js";

export default class KeysShow extends Rtr7Command {
  static override summary = "Show the fleet's current signing key and its history.";

  static override description = `Prints the current key's id, its public key file (minisign's format: anyone can check a
release with \`minisign -Vm manifest.json -p signing.pub\`) and the public key line itself, then
the keys it replaced, oldest first.`;

  static override examples = [
    { description: "Show the key:", command: "<%= config.bin %> keys show" },
    { description: "For a script:", command: "<%= config.bin %> keys show --json" },
  ];

  async run(): Promise<void> {
    const { flags } = await this.parse(KeysShow);
    const log = this.makeLogger(flags);
    const { keysDir, showKeys } = await import("../../../updates/keys.js");
    const { formatPublicKey } = await import("../../../lib/trust/minisign.js");
    const state = await showKeys(keysDir());
    const publicKey = formatPublicKey(state.current).split("\n")[1] ?? "";
    if (flags.json) {
      log.info(
        {
          event: "key",
          keyId: state.current.keyId,
          publicKey,
          publicKeyFile: state.publicKeyFile,
          history: state.history,
        },
        `signing key ${state.current.keyId}`,
      );
      return;
    }
    log.info(`signing key ${state.current.keyId}`);
    log.info(`public key  ${publicKey}`);
    log.info(`file        ${state.publicKeyFile}`);
    if (state.history.length > 1) log.info(`history     ${state.history.join(" → ")}`);
  }
}
