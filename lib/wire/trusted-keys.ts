// GET /trusted-keys on the recovery server: the workstation's public
// signing keys, for recovery-init to install into a unit that trusts none,
// or, with `replace` (`rtr7 recover --new-key`, typed by a person), to put
// in place of the keys the unit trusts, whatever they are. Behind the
// session token, like /credentials; defined once for both sides.
export const trustedKeysPath = "/trusted-keys";

export interface TrustedKeysReply {
  /** minisign public key files ("untrusted comment: ...\nRW...\n"); empty when the workstation has no key. */
  keys: string[];
  /** Set by `rtr7 recover --new-key`: the unit's trusted keys are replaced by `keys`, and the release is not checked against the old ones. */
  replace?: boolean;
}
