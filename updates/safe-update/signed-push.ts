// safe-update's push of a signed release, before its images: when the run
// directory has manifest.json.minisig and the unit lists `signed`, ask the
// unit what it trusts; when it trusts keys but not the one that signed the
// release, walk the workstation's rotation statements in order (each signed
// by the key it replaces: a unit several rotations behind catches up, one
// that trusts a statement's new key already takes it as a no-op, one that
// trusts none of the signers refuses each and then refuses the manifest,
// which is the error the user sees), then send the manifest, which the
// unit records for the inactive slot and checks every image against. A
// unit that does not list `signed` (gokrazy, older rtr7) gets the images
// alone, as before.
import { access, readFile } from "node:fs/promises";
import path from "node:path";
import { describeError, isRtr7Error } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import { parseSignature } from "../../lib/trust/minisign.js";
import { manifestSignatureFile, type RotationStatement } from "../../lib/trust/release-signature.js";
import type { UnitTarget } from "../client/index.js";
import type { UpdateRun } from "../runs.js";

export interface SignedPushOptions {
  /** The workstation's rotation statements, oldest first (updates/keys.ts rotationStatements). */
  rotations?: readonly RotationStatement[];
  /** Let the unit take a release signed before the one it runs. */
  allowDowngrade?: boolean;
}

/** Sends the run's signed manifest (and any rotations the unit needs); "unsigned" when there is none to send. */
export async function pushSignedManifest(
  unit: UnitTarget,
  run: UpdateRun,
  log: Logger,
  options: SignedPushOptions,
): Promise<"sent" | "unsigned" | "not supported"> {
  const signatureFile = path.join(run.dir, manifestSignatureFile);
  const signed = await access(signatureFile).then(
    () => true,
    () => false,
  );
  if (!signed) return "unsigned";
  if (!unit.supports("signed")) {
    log.info(`${unit.address} does not list the signed feature: pushing the images without the manifest.`);
    run.event({ event: "manifest", outcome: "not supported" });
    return "not supported";
  }
  const manifest = await readFile(path.join(run.dir, "manifest.json"));
  const signature = await readFile(signatureFile, "utf8");
  const keyId = parseSignature(signature, signatureFile).keyId;
  const trust = await unit.trust();
  if (trust.keys.length > 0 && !trust.keys.includes(keyId)) {
    log.info(
      { keyId, trusted: trust.keys },
      `The unit trusts key ${trust.keys.join(", ")}, not ${keyId}: sending ${options.rotations?.length ?? 0} rotation statement(s).`,
    );
    for (const statement of options.rotations ?? []) {
      try {
        const introduced = await unit.introduceKey(statement);
        run.event({ event: "rotation", ...introduced });
        if (introduced.changed)
          log.info(
            `The unit now trusts key ${introduced.added ?? "?"} in place of ${introduced.removed ?? "?"}.`,
          );
      } catch (error) {
        if (!isRtr7Error(error, "RTR7_ERR_SIGNATURE")) throw error;
        log.debug(`A rotation statement was refused: ${describeError(error)}`);
      }
    }
  }
  const accepted = await unit.sendManifest({ manifest, signature, allowDowngrade: options.allowDowngrade });
  run.event({ event: "manifest", outcome: "sent", ...accepted });
  log.info(
    { version: accepted.version, keyId: accepted.keyId, slot: accepted.slot },
    accepted.verified
      ? `The unit verified release ${accepted.version} (key ${accepted.keyId ?? "?"}) for slot ${accepted.slot}.`
      : `The unit trusts no key: it recorded release ${accepted.version}'s manifest unverified and checks the images against it.`,
  );
  return "sent";
}
