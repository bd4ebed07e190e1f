// `rtr7 keys rotate`: the next signing key, introduced by a statement the
// current key signs; units learn it from that statement only. The work is
// in updates/keys.ts.
import { Rtr7Command } from "../../base.js";

export default class KeysRotate extends Rtr7Command {
  static override summary = "Replace the signing key with a new one that the old key introduces.";

  static override description = `Makes a new key and a statement, signed by the current key, that the new key replaces
it (keys/rotations/NNNN-ID.pub and its .minisig). The old key moves to keys/retired/. The next
\`rtr7 safe-update\` or \`rtr7 fleet update\` sends a unit that trusts an older key every
statement it lacks, in order: the unit trusts the new key (and no longer the old) only once a
key it trusts has introduced it, so releases signed by the new key are accepted after that and
not before. Releases signed by a retired key are re-signed by the current key when pushed,
keeping their release time (rollback protection still sees their age).`;

  static override examples = [{ description: "Rotate the key:", command: "<%= config.bin %> keys rotate" }];

  async run(): Promise<void> {
    const { flags } = await this.parse(KeysRotate);
    const log = this.makeLogger(flags);
    const { keysDir, rotateKeys } = await import("../../../updates/keys.js");
    const dir = keysDir();
    const { old, next } = await rotateKeys(dir);
    log.info(
      { event: "key", action: "rotated", keyId: next.keyId, replaces: old.keyId, dir },
      `Signing key ${next.keyId} replaces ${old.keyId} (kept in ${dir}/retired); units learn it at their next update.`,
    );
  }
}
