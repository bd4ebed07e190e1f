// The workstation's public signing key, for a unit that trusts none yet:
// `rtr7 keys init` keeps it in $XDG_CONFIG_HOME/rtr7/keys/signing.pub
// (updates/keys.ts). Only the public key file is read, never signing.key,
// so the recovery server holds no private key at all. No key there means
// nothing to give: the unit keeps trusting what it trusts.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error, describeError } from "../lib/errors.js";
import { formatPublicKey, parsePublicKey } from "../lib/trust/minisign.js";

/** The public key files (minisign's format) a unit that trusts no key is given; empty without a key. */
export async function workstationPublicKeys(keysDirectory: string): Promise<string[]> {
  const file = path.join(keysDirectory, "signing.pub");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new Rtr7Error("RTR7_ERR_KEY", `read ${file}: ${describeError(error)}`, { cause: error });
  }
  return [formatPublicKey(parsePublicKey(text, file))];
}
