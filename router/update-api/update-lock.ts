// The update API's one lock: an upload, switch, testboot, commit, reboot,
// key rotation or manifest holds it while it runs, and anything else that
// would change the unit meanwhile is refused at once with 409
// (RTR7_ERR_UPDATE_BUSY), its body unread.
import { Rtr7Error } from "../../lib/errors.js";

/** Held by the one update step that runs; everything else that changes the unit is turned away. */
export class UpdateLock {
  private holder: string | undefined;

  get busyWith(): string | undefined {
    return this.holder;
  }

  acquire(what: string): void {
    if (this.holder !== undefined) {
      throw new Rtr7Error("RTR7_ERR_UPDATE_BUSY", `${what}: refused, ${this.holder} is in progress`);
    }
    this.holder = what;
  }

  release(): void {
    this.holder = undefined;
  }
}
