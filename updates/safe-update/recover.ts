// safe-update's last resort: re-imaging a unit that stays silent after its
// trial should have fallen back, over PXE, with the last known-good run's
// images and the backup this run took. The default is server/recover.ts's
// recover() in this very process (loaded only when needed), with `rtr7
// recover`'s defaults and whatever the caller sets (the interface facing
// the unit, most often); tests and the fleet inject their own.
import type { Logger } from "../../lib/log.js";
import type { RecoverOptions, RecoveryImages } from "../../server/recover.js";

export interface RecoveryRequest {
  hostname: string;
  /** The last known-good run's images, and this run's backup when it has one. */
  images: RecoveryImages;
  /** The run directory the images come from. */
  imageDir: string;
  log: Logger;
}

/** Resolves when the unit reported a successful recovery; rejects otherwise. */
export type Recover = (request: RecoveryRequest) => Promise<unknown>;

/** What the default recovery may be told beyond the images: rtr7 recover's flags. */
export type RecoverSettings = Partial<Omit<RecoverOptions, "images" | "hostname" | "log">>;

/** server/recover.ts's recover(), in this process, with rtr7 recover's defaults. */
export function inProcessRecover(settings: RecoverSettings = {}): Recover {
  return async (request) => {
    const [{ recover }, { newestKernel }] = await Promise.all([
      import("../../server/recover.js"),
      import("../../lib/host-kernel.js"),
    ]);
    return recover({
      recoverOctet: 1,
      reset: true,
      ports: { http: 7773, tftp: 69, dhcp: 67 },
      ...settings,
      kernel: settings.kernel ?? newestKernel(),
      images: request.images,
      hostname: request.hostname,
      log: request.log,
    });
  };
}
