// What the recovery server lets image downloads hold. A download holds a
// ring of 1 MiB buffers while its client reads (server/http/send-file.ts);
// a client that asks for root.img and never reads held its ring, 4 MiB, for
// ever: 100 such sockets took the server from 70 to 474 MiB. So:
// - the buffers come from one pool, reused from download to download, and
//   the pool never grows past `maxTransfers` rings;
// - at most `maxTransfers` downloads run at once, and at most
//   `maxTransfersPerPeer` from one address (a unit fetches one image at a
//   time), so a flood from one host cannot take the slots the unit needs;
//   others are told to come back (503 with Retry-After). The unit being
//   recovered (the address the recovery's DHCP hands out) is held to the
//   per-address cap only, so a flood from many addresses cannot lock it out;
// - a download whose client takes no bytes for `idleMs` is ended (its socket
//   destroyed), which frees its slot and its buffers.

export interface TransferLimits {
  /** Downloads at once, from all peers. Default 8. */
  maxTransfers: number;
  /** Downloads at once from one address. Default 2. */
  maxTransfersPerPeer: number;
  /** A download whose client reads nothing for this long is ended. Default 60 s. */
  idleMs: number;
}

export const defaultTransferLimits: TransferLimits = {
  maxTransfers: 8,
  maxTransfersPerPeer: 2,
  idleMs: 60_000,
};

export const ringBufferBytes = 1024 * 1024;
export const ringLength = 4;

/** Buffers handed from download to download; at most `capacity` are ever made. */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private made = 0;

  constructor(
    readonly bufferBytes: number,
    readonly capacity: number,
  ) {}

  /** A buffer, or undefined when `capacity` buffers are out. */
  take(): Buffer | undefined {
    const reused = this.free.pop();
    if (reused !== undefined) return reused;
    if (this.made >= this.capacity) return undefined;
    this.made += 1;
    return Buffer.allocUnsafeSlow(this.bufferBytes);
  }

  give(buffer: Buffer): void {
    this.free.push(buffer);
  }

  /** Buffers allocated so far (in use or free). */
  get allocated(): number {
    return this.made;
  }
}

export type Admission = { admitted: true; release: () => void } | { admitted: false; reason: string };

/** Counts the downloads under way, in all and per peer, and admits new ones within the limits. */
export class TransferGate {
  private running = 0;
  private readonly perPeer = new Map<string, number>();
  readonly pool: BufferPool;

  constructor(readonly limits: TransferLimits = defaultTransferLimits) {
    // Priority peers may run beyond maxTransfers: room for one of them.
    this.pool = new BufferPool(
      ringBufferBytes,
      (limits.maxTransfers + limits.maxTransfersPerPeer) * ringLength,
    );
  }

  /** A priority peer (the unit being recovered) is held to the per-peer cap only. */
  admit(peer: string, priority = false): Admission {
    const fromPeer = this.perPeer.get(peer) ?? 0;
    if (fromPeer >= this.limits.maxTransfersPerPeer)
      return {
        admitted: false,
        reason: `${peer} already has ${fromPeer} downloads under way (at most ${this.limits.maxTransfersPerPeer} per address)`,
      };
    if (!priority && this.running >= this.limits.maxTransfers)
      return {
        admitted: false,
        reason: `${this.running} downloads are under way (at most ${this.limits.maxTransfers})`,
      };
    this.running += 1;
    this.perPeer.set(peer, fromPeer + 1);
    let released = false;
    return {
      admitted: true,
      release: () => {
        if (released) return;
        released = true;
        this.running -= 1;
        const left = (this.perPeer.get(peer) ?? 1) - 1;
        if (left === 0) this.perPeer.delete(peer);
        else this.perPeer.set(peer, left);
      },
    };
  }

  get underWay(): number {
    return this.running;
  }
}
