// The image manifest: what the recovery server offers and what the unit
// checks every byte against. Served as /manifest.json by `rtr7 recover`,
// written next to the images by the image builder, read by recovery-init.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { Rtr7Error } from "../errors.js";

export { imageNames, type ImageName } from "./images.js";

export interface ManifestImage {
  name: string;
  size: number;
  /** Lowercase hex SHA-256 of the whole file. */
  sha256: string;
}

export interface Manifest {
  /** The one unit a per-unit build is for (`rtr7 image build --hostname H`, as gokrazy builds). */
  hostname?: string;
  /**
   * A fleet release (built without --hostname): it boots on any unit, which
   * takes its hostname from /perm/hostname and names its root slots by its
   * own disk identifier.
   */
  anyUnit?: boolean;
  version?: string;
  buildTime?: string;
  images: ManifestImage[];
}

export async function sha256OfFile(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    const bytes = chunk as Buffer;
    size += bytes.length;
    hash.update(bytes);
  }
  return { sha256: hash.digest("hex"), size };
}

/** A loose structural check for a manifest read from the network or disk; RTR7_ERR_MANIFEST when it fails. */
export function parseManifest(value: unknown): Manifest {
  const record = value as Partial<Manifest> | null;
  if (!record || !Array.isArray(record.images))
    throw new Rtr7Error("RTR7_ERR_MANIFEST", "manifest: want an object with an images array");
  for (const image of record.images as unknown[]) {
    const entry = image as Partial<ManifestImage> | null;
    if (
      !entry ||
      typeof entry.name !== "string" ||
      typeof entry.size !== "number" ||
      !Number.isSafeInteger(entry.size) ||
      entry.size < 0 ||
      typeof entry.sha256 !== "string" ||
      !/^[0-9a-f]{64}$/.test(entry.sha256)
    ) {
      throw new Rtr7Error(
        "RTR7_ERR_MANIFEST",
        `manifest: malformed image entry ${JSON.stringify(image)} (want name, a size in bytes and a lowercase hex sha256)`,
      );
    }
  }
  return record as Manifest;
}
