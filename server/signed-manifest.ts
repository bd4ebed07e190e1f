// A signed release's manifest, for the recovery server: when the images come
// from `rtr7 image build`'s directory and manifest.json.minisig lies beside
// manifest.json, the unit must get manifest.json's exact bytes (the
// signature covers them, not a manifest rebuilt from the images) and the
// signature. The signature is not checked here (the unit checks it against
// the keys it trusts); what is checked is that the signed manifest describes
// the files being served, so a directory whose images were rebuilt after
// signing is refused before anything is served, instead of by the unit
// after its disk was partitioned.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error, describeError } from "../lib/errors.js";
import { manifestSignatureFile } from "../lib/trust/release-signature.js";
import { parseManifest, type ManifestImage } from "../lib/wire/manifest.js";

export interface SignedManifest {
  /** manifest.json as signed, byte for byte. */
  bytes: Buffer;
  /** manifest.json.minisig's text. */
  signature: string;
}

/** The signed manifest beside `manifestPath`, or undefined when it has no signature. */
export async function signedManifest(
  manifestPath: string,
  served: readonly ManifestImage[],
): Promise<SignedManifest | undefined> {
  const signaturePath = path.join(path.dirname(manifestPath), manifestSignatureFile);
  let signature: string;
  try {
    signature = await readFile(signaturePath, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Rtr7Error("RTR7_ERR_MANIFEST", `read ${signaturePath}: ${describeError(error)}`, {
      cause: error,
    });
  }
  const bytes = await readFile(manifestPath);
  const manifest = parseManifest(JSON.parse(bytes.toString("utf8")));
  for (const image of served) {
    const listed = manifest.images.find((entry) => entry.name === image.name);
    if (listed === undefined || listed.size !== image.size || listed.sha256 !== image.sha256)
      throw new Rtr7Error(
        "RTR7_ERR_MANIFEST",
        `${manifestPath} (signed): ${image.name} is ${listed ? `${listed.size} bytes, sha256 ${listed.sha256}` : "not listed"} there, but the file served is ${image.size} bytes, sha256 ${image.sha256}`,
        {
          hint: "The images changed after the release was signed: rebuild the release (`rtr7 image build`), which signs it again.",
        },
      );
  }
  return { bytes, signature };
}
