// Wrong passwords, counted per source address. A guesser is slowed down:
// after `maxFailures` wrong passwords within `windowMs`, that address gets
// 429 (RTR7_ERR_UPDATE_LOGIN_LIMIT) until the window has passed, whatever it
// sends; other addresses are not affected. And the log gets one line for an
// address's first failure and then one summary per window, not one line per
// guess (200 wrong passwords made 200 lines).
import type { Logger } from "../../lib/log.js";

export interface LoginLimits {
  /** Wrong passwords allowed per address within the window. Default 10. */
  maxFailures: number;
  /** Default 60 s. */
  windowMs: number;
}

export const defaultLoginLimits: LoginLimits = { maxFailures: 10, windowMs: 60_000 };

interface AddressRecord {
  windowStart: number;
  failures: number;
  /** Failures not yet logged. */
  unreported: number;
}

export class LoginLimiter {
  private readonly records = new Map<string, AddressRecord>();

  constructor(
    private readonly log: Logger,
    private readonly limits: LoginLimits = defaultLoginLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds until `address` may try again, or 0 when it may now. */
  blockedFor(address: string): number {
    const record = this.current(address);
    if (record === undefined || record.failures < this.limits.maxFailures) return 0;
    return Math.max(0, record.windowStart + this.limits.windowMs - this.now());
  }

  /** Records a wrong password from `address`, logging as described above. */
  failed(address: string, what: string): void {
    let record = this.current(address);
    if (record === undefined) {
      record = { windowStart: this.now(), failures: 0, unreported: 0 };
      this.records.set(address, record);
      this.log.warn({ peer: address, event: "login-failed" }, `${what}: wrong or missing password`);
    } else {
      record.unreported += 1;
    }
    record.failures += 1;
    if (record.failures === this.limits.maxFailures)
      this.log.warn(
        { peer: address, event: "login-limited", failures: record.failures },
        `${address}: ${record.failures} wrong passwords within ${this.limits.windowMs / 1000} s; refused until the window ends`,
      );
  }

  /** The record of `address` in the current window; an ended window is summed up in the log and dropped. */
  private current(address: string): AddressRecord | undefined {
    const record = this.records.get(address);
    if (record === undefined) return undefined;
    if (this.now() - record.windowStart < this.limits.windowMs) return record;
    if (record.unreported > 0)
      this.log.warn(
        { peer: address, event: "login-failed", count: record.unreported },
        `${address}: ${record.unreported} more wrong password(s) in the last ${this.limits.windowMs / 1000} s`,
      );
    this.records.delete(address);
    return undefined;
  }
}
