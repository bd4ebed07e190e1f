// The uplink's check of a job's release, before anything is written: the
// manifest and its signature fetched from the job's base URL (pinned when
// the job names the server's certificate), verified against the unit's
// trusted keys (lib/trust), and checked to fit the unit (a fleet release or
// one built for it, not older than the one it runs unless the job allows a
// downgrade: the update API's own rule, signed-release.ts) and to be the
// release the job names. A unit that trusts no key rejects every remote
// job. Every refusal ends the job REJECTED; a release that cannot be fetched
// ends it FAILED (the server may send it again).
import { Rtr7Error, describeError, isRtr7Error } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import { manifestSignatureFile, verifyManifest } from "../../lib/trust/release-signature.js";
import { readTrustedKeys } from "../../lib/trust/trusted-keys.js";
import type { JobDocument } from "../../lib/wire/jobs.js";
import { imageFiles } from "../../lib/wire/images.js";
import type { ManifestImage } from "../../lib/wire/manifest.js";
import { readSlotReleases } from "../update-api/release-state.js";
import { checkReleaseFits } from "../update-api/signed-release.js";
import { fetchSmall } from "./https.js";
import type { BootState } from "./installer.js";

/** How a job ends early: FAILED (it may be sent again) or REJECTED (the unit will not take it). */
export class JobEnd extends Error {
  constructor(
    readonly state: "FAILED" | "REJECTED",
    reason: string,
  ) {
    super(reason);
  }
}

export async function fetchVerifiedRelease(
  options: { perm: string; hostname: string; log: Logger },
  job: JobDocument,
  boot: BootState,
): Promise<{ manifestText: string; signature: string; images: ManifestImage[] }> {
  const { keys, skipped } = await readTrustedKeys(options.perm);
  for (const why of skipped) options.log.warn(`not a trusted key, skipped: ${why}`);
  if (keys.length === 0)
    throw new JobEnd(
      "REJECTED",
      "this unit trusts no signing key (/perm/rtr7/trusted-keys is empty), and a remote job needs a release signed by one: the broker must never be able to make a unit install anything",
    );
  const base = job.release.baseUrl;
  const pin = job.release.tlsFingerprint;
  let manifestBytes: Buffer;
  let signature: string;
  try {
    manifestBytes = await fetchSmall(new URL("manifest.json", base), pin, 1024 * 1024);
  } catch (error) {
    throw new JobEnd("FAILED", `manifest: ${describeError(error)}`);
  }
  try {
    signature = (await fetchSmall(new URL(manifestSignatureFile, base), pin, 64 * 1024)).toString("utf8");
  } catch (error) {
    throw new JobEnd(
      isRtr7Error(error, "RTR7_ERR_UPLINK_DOWNLOAD") ? "REJECTED" : "FAILED",
      `the release is not signed: ${describeError(error)}`,
    );
  }
  try {
    const release = verifyManifest(manifestBytes, signature, keys, `${base}manifest.json`);
    checkReleaseFits(
      release,
      {
        hostname: options.hostname,
        running: boot.slot,
        runningRelease: (await readSlotReleases(options.perm))[boot.slot],
      },
      job.allowDowngrade,
    );
    if (release.version !== job.release.version)
      throw new Rtr7Error(
        "RTR7_ERR_SIGNATURE",
        `the job names release ${job.release.version}, but the signed manifest is release ${release.version}`,
      );
    return {
      manifestText: manifestBytes.toString("utf8"),
      signature,
      images: installOrder(release.manifest.images),
    };
  } catch (error) {
    throw new JobEnd("REJECTED", describeError(error));
  }
}

/** root, boot, mbr (safe-update's order: the MBR's boot code last); an image the unit does not know is refused. */
function installOrder(images: readonly ManifestImage[]): ManifestImage[] {
  const order: readonly string[] = [imageFiles.root, imageFiles.boot, imageFiles.mbr];
  for (const image of images)
    if (!order.includes(image.name))
      throw new Rtr7Error(
        "RTR7_ERR_SIGNATURE",
        `the signed manifest lists ${JSON.stringify(image.name)}, not an image a unit takes (${order.join(", ")})`,
      );
  return [...images].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
}
