// What a recovery serves of the images: each file opened once (mbr.img,
// boot.img, root.img, the backup), hashed into the manifest the unit checks
// every byte against (with the release's version and kind when its own
// manifest names them), and, for a signed release, its manifest.json's
// exact bytes and manifest.json.minisig (signed-manifest.ts), which the unit
// checks against the keys it trusts. A release built for another unit is
// refused first (release.ts).
import type { Logger } from "../lib/log.js";
import { FileMap, fileFromBuffer, fileFromDisk } from "../lib/served-files.js";
import { manifestSignatureFile } from "../lib/trust/release-signature.js";
import { imageFiles as imageFileNames } from "../lib/wire/images.js";
import { sha256OfFile, type Manifest } from "../lib/wire/manifest.js";
import { releaseKind } from "./release.js";
import type { RecoveryImages } from "./recover.js";
import { signedManifest, type SignedManifest } from "./signed-manifest.js";

export async function prepareImages(
  images: RecoveryImages,
  hostname: string,
  log: Logger,
): Promise<{ imageFiles: FileMap; manifest: Manifest; signed?: SignedManifest }> {
  const release = await releaseKind(images, hostname);
  log.info(
    { event: "release", ...release },
    release.anyUnit
      ? `the images are a fleet release: recovery names them for ${hostname}`
      : release.hostname
        ? `the images are built for ${hostname}`
        : "the images say nothing of the unit they are for",
  );
  const named: [string, string][] = [
    [imageFileNames.mbr, images.mbr],
    [imageFileNames.boot, images.boot],
    [imageFileNames.root, images.root],
  ];
  const imageFiles = new FileMap();
  for (const [name, path] of named) imageFiles.add(await fileFromDisk(name, path));
  if (images.backup !== undefined) imageFiles.add(await fileFromDisk("backup.tar.gz", images.backup));
  const hashed = await Promise.all(
    named.map(async ([name, path]) => ({ name, ...(await sha256OfFile(path)) })),
  );
  for (const image of hashed) {
    log.debug({ event: "image", ...image }, `${image.name}: ${image.size} bytes, sha256 ${image.sha256}`);
  }
  const signed = images.manifest === undefined ? undefined : await signedManifest(images.manifest, hashed);
  if (signed) {
    imageFiles.add(fileFromBuffer(manifestSignatureFile, signed.signature));
    log.info({ event: "signed-release" }, `the release is signed: serving ${manifestSignatureFile}`);
  }
  return {
    imageFiles,
    manifest: {
      ...(release.anyUnit ? { anyUnit: true } : { hostname }),
      ...(release.version === undefined ? {} : { version: release.version }),
      images: hashed,
    },
    ...(signed ? { signed } : {}),
  };
}
