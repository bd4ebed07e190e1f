// What safe-update writes for the unit and beside it: the release's signed
// manifest first, when it has one (signed-push.ts), then the three images
// pushed in order (root, boot, then mbr), each verified by the hash the unit
// replies and recorded in the run's events; and, when a run fails, its
// recover.bash rewritten to warn and to name the last known-good run.
import { stat } from "node:fs/promises";
import path from "node:path";
import { describeError } from "../../lib/errors.js";
import { formatBytes, type Logger } from "../../lib/log.js";
import { imageFiles } from "../../lib/wire/images.js";
import type { UnitTarget } from "../client/index.js";
import { writeRecoverScript } from "../recover-script.js";
import { lastKnownGood, type UpdateRun } from "../runs.js";
import type { SafeUpdateOptions } from "../safe-update.js";
import { pushSignedManifest } from "./signed-push.js";

/** The signed manifest when there is one, then root, boot and mbr, each verified by the hash the unit replies. */
export async function pushImages(
  unit: UnitTarget,
  run: UpdateRun,
  log: Logger,
  options: Pick<SafeUpdateOptions, "onProgress" | "rotations" | "allowDowngrade">,
): Promise<void> {
  await pushSignedManifest(unit, run, log, options);
  for (const target of ["root", "boot", "mbr"] as const) {
    const file = imageFiles[target];
    const image = path.join(run.dir, file);
    const size = (await stat(image)).size;
    const pushed = await unit.streamTo(target, image, {
      onProgress: (sent, total) => options.onProgress?.({ image: file, bytesDone: sent, bytesTotal: total }),
    });
    run.event({ event: "pushed", image: file, bytes: pushed.bytes, hash: pushed.hash, ms: pushed.ms });
    log.info(
      { image: file, bytes: size, ms: pushed.ms },
      `Pushed ${file} (${formatBytes(size)}, ${pushed.algorithm} verified) in ${(pushed.ms / 1000).toFixed(1)} s.`,
    );
  }
}

/** Rewrites a failed run's recover.bash so that it warns, naming the last known-good run. */
export async function markRecoverScriptFailed(
  run: UpdateRun,
  options: Pick<SafeUpdateOptions, "updatesDir" | "hostname" | "recoverScript">,
  version: string,
  message: string,
): Promise<void> {
  const good = await lastKnownGood(options.updatesDir, options.hostname).catch(() => undefined);
  const warning =
    `these are the images of a failed update to ${version} (${message}).` +
    (good ? ` The last known-good run is ${good.dir}: run its recover.bash instead.` : "");
  await writeRecoverScript(run.dir, {
    hostname: options.hostname,
    cli: options.recoverScript,
    warning,
  }).catch((error: unknown) =>
    run.stderr.write(`rtr7 safe-update: rewriting recover.bash: ${describeError(error)}\n`),
  );
}
