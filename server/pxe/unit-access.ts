// Who may fetch what the recovery servers serve: a pure function from (the
// DHCP lock, the asking address, the file) to serve or refuse, asked by the
// TFTP server for every read request and by the HTTP server for every file
// (the images, manifest.json and its signature, lpxelinux's kernel and
// initramfs) and for GET /credentials. No sockets and no logging here; the
// servers refuse (TFTP "Access violation", HTTP 403 RTR7_ERR_RECOVERY_PEER)
// and log the reason with the peer.
//
// Why: pxelinux.cfg/default (which both pxelinux and syslinux.efi read)
// carries the run's session token on the kernel command line, and the token
// is what the unit's reports and its password are checked against. The rule:
// once the DHCP lock is taken and the locked MAC has been ACKed, every file is
// served to the address that ACK gave it, and to nothing else. One rule for
// every file, not a list of the files that hold the token, so a file added
// later (another loader's config) is covered without anyone remembering to.
// The files with no secret (pxelinux.0, the kernel) are no use to anyone else.
//
// Before the lock's ACK nothing is served, to anyone. A PXE ROM asks TFTP
// only after its DHCP ACK (it learns the server and the boot file from it),
// pxelinux reuses that ACK, and the recovery initramfs fetches over HTTP only
// after its own DHCP, so the unit itself never asks earlier: whoever does is
// another host. Serving it would hand out the token during the whole wait for
// the unit's reset, minutes when it is reset by hand, which is the very
// window someone on the LAN would use. With --mac the MAC is locked from the
// start but no address is bound to it until its ACK, so --mac waits for the
// ACK too: otherwise any host that gave itself the offer address by hand
// could fetch the token before the unit boots.
//
// What this does not stop: a host on the LAN that takes the unit's address
// (ARP spoofing) after the ACK. An address is as much identity as a LAN
// gives before the unit has a key; the token is per run and dies with it.
export interface UnitAccessState {
  /** The MAC the DHCP lock holds, lowercase "aa:bb:cc:dd:ee:ff". */
  readonly lockedMac?: string;
  /** The address the locked MAC's ACK gave it: the only one served. */
  readonly unitAddress?: string;
}

export interface AccessRequest {
  /** The asking peer's address, as the socket saw it. */
  readonly peerAddress: string;
  /** What it asks for: a TFTP file name or an HTTP path. */
  readonly resource: string;
}

export type AccessDecision =
  | { readonly allowed: true }
  | {
      readonly allowed: false;
      /** Why, for the log and the error: "served only to 52:54:00:12:34:56 at 10.0.0.1". */
      readonly reason: string;
    };

export function initialAccessState(lockedMac?: string): UnitAccessState {
  return lockedMac === undefined ? {} : { lockedMac };
}

/**
 * The state after the DHCP server ACKed `mac` with `address`. An ACK for
 * another MAC than the locked one changes nothing (the DHCP policy never
 * sends one; this keeps the rule whole if it ever did).
 */
export function afterAck(state: UnitAccessState, lease: { mac: string; address: string }): UnitAccessState {
  const mac = lease.mac.toLowerCase();
  if (state.lockedMac !== undefined && state.lockedMac !== mac) return state;
  return { lockedMac: mac, unitAddress: lease.address };
}

export function mayFetch(state: UnitAccessState, request: AccessRequest): AccessDecision {
  if (state.unitAddress === undefined) {
    return {
      allowed: false,
      reason:
        state.lockedMac === undefined
          ? "no unit has been given an address yet (no DHCP ACK): nothing is served before"
          : `${state.lockedMac} has not been given an address yet (no DHCP ACK): nothing is served before`,
    };
  }
  if (plainIpv4(request.peerAddress) === state.unitAddress) return { allowed: true };
  return {
    allowed: false,
    reason: `served only to the unit being recovered (${state.lockedMac ?? "?"} at ${state.unitAddress}), not ${request.peerAddress}`,
  };
}

/** "::ffff:10.0.0.1" (an IPv4 peer on a dual-stack socket) as "10.0.0.1". */
function plainIpv4(address: string): string {
  return address.toLowerCase().startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}
