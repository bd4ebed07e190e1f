// Keeps the event loop polling, without sleeping, for a short while after the
// TFTP server sends a packet, so that the client's answer is read as soon as
// it arrives instead of after the kernel has woken the process up; and turns
// itself off where that does not pay.
//
// Why: TFTP as curl, tftp-hpa and PXE firmware speak it is lock-step (one
// block, then wait for its ACK), so a transfer runs at one block per round
// trip. On an otherwise idle machine most of a round trip is wake-ups: here
// (2-core VM, veth, curl, blksize 1468) about 75 µs per block, of which the
// server's own work was about 12 µs. Polling instead of sleeping removes the
// server's wake-up from each round trip, about halving it. But on a machine
// whose cores are busy with other work, wake-ups are cheap and a spinning
// server takes CPU time from the client: there it was 30% slower.
//
// So it measures. Sends come one per answer, so the mean time between sends
// (gaps over maxGap, between transfers, left out) is the time per block. A
// cycle of epochs of 256 sends starts with one epoch polling and one
// sleeping; the rest of the cycle uses whichever had the shorter mean, and
// sleeping wins unless polling was at least 5% faster. A cycle is 16 epochs,
// doubling up to 128 while the same mode keeps winning, so measuring the
// loser costs little once the machine's behaviour is known. A slow client
// (firmware in an emulator) thus gets no polling. A pending setImmediate makes
// libuv poll for I/O with a zero timeout, so other sockets and timers are
// still served while it spins.

export interface BusyPollOptions {
  /** How long to poll after each send; 0 = never. */
  budgetMicroseconds: number;
  /** Monotonic clock in nanoseconds; process.hrtime.bigint by default. */
  now?: () => bigint;
  /** Runs a callback after pending I/O; setImmediate by default. */
  defer?: (callback: () => void) => void;
}

type Mode = "poll" | "sleep";

export const epochLength = 256;
export const shortestCycle = 16;
export const longestCycle = 128;
const maxGap = 50_000_000n;
const requiredGain = 0.95;

export class BusyPoll {
  private readonly budget: bigint;
  private readonly now: () => bigint;
  private readonly defer: (callback: () => void) => void;
  private deadline = 0n;
  private polling = false;
  private stopped = false;
  private lastSend: bigint | undefined;
  private epoch = 0;
  private epochSends = 0;
  private epochTime = 0n;
  private readonly meanGap: Record<Mode, number> = { poll: 0, sleep: 0 };
  private winner: Mode | undefined;
  private cycleLength = shortestCycle;

  constructor(options: BusyPollOptions) {
    this.budget = BigInt(Math.max(0, Math.round(options.budgetMicroseconds * 1000)));
    this.now = options.now ?? (() => process.hrtime.bigint());
    this.defer = options.defer ?? setImmediate;
  }

  /** What the current epoch does: measure each mode, then use the faster. */
  mode(): Mode {
    if (this.budget === 0n || this.epoch === 1) return "sleep";
    return this.epoch === 0 ? "poll" : (this.winner ?? "sleep");
  }

  /** Epochs in the current cycle (for tests and logs). */
  cycle(): number {
    return this.cycleLength;
  }

  /** A packet was sent and its answer is awaited. */
  touch(): void {
    if (this.budget === 0n || this.stopped) return;
    const now = this.now();
    if (this.lastSend !== undefined && now - this.lastSend < maxGap) this.record(now - this.lastSend);
    this.lastSend = now;
    if (this.mode() === "sleep") return;
    this.deadline = now + this.budget;
    if (!this.polling) {
      this.polling = true;
      this.defer(this.poll);
    }
  }

  /** Stops polling for good (the server closed). */
  stop(): void {
    this.stopped = true;
  }

  private record(gap: bigint): void {
    this.epochTime += gap;
    this.epochSends += 1;
    if (this.epochSends < epochLength) return;
    if (this.epoch < 2) this.meanGap[this.mode()] = Number(this.epochTime) / this.epochSends;
    if (this.epoch === 1) this.decide();
    this.epoch = (this.epoch + 1) % this.cycleLength;
    this.epochSends = 0;
    this.epochTime = 0n;
  }

  private decide(): void {
    const winner: Mode = this.meanGap.poll < this.meanGap.sleep * requiredGain ? "poll" : "sleep";
    this.cycleLength = winner === this.winner ? Math.min(this.cycleLength * 2, longestCycle) : shortestCycle;
    this.winner = winner;
  }

  private readonly poll = (): void => {
    if (!this.stopped && this.now() < this.deadline) {
      this.defer(this.poll);
    } else {
      this.polling = false;
    }
  };
}
