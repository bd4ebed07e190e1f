// GET /trusted-keys on the recovery server: the workstation's public
// signing keys, for recovery-init to install into a unit that trusts none
// Behind the session token, like /credentials; defined once for both sides.
export const trustedKeysPath = "/trusted-keys";

export interface TrustedKeysReply {
  /** minisign public key files ("untrusted comment: ...\nRW...\n"); empty when the workstation has no key. */
  keys: string[];
}
