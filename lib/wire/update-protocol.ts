// gokrazy's update protocol, as both sides of rtr7 speak it: the unit's
// update API (router/update-api) and the workstation's unit target
// (updates/client). Ports, the user name, the upload targets, the hash
// header and the features list are defined once here.

/**
 * router7's ports: the update API, diagd and backupd; and rtr7's HTTPS
 * ports for the same services (443, and the usual ports plus one), served
 * with the unit's certificate, which the workstation pins.
 */
export const unitPorts = {
  update: 80,
  diagd: 7733,
  backupd: 8077,
  updateTls: 443,
  diagdTls: 7734,
  backupdTls: 8078,
} as const;

/** The HTTP basic-auth user of the update API and backupd, as gokrazy names it. */
export const updateUser = "gokrazy";

/** What `PUT /update/<target>` writes: the inactive root slot, the boot partition, the MBR's boot code. */
export const uploadTargets = ["root", "boot", "bootonly", "mbr"] as const;
export type UploadTarget = (typeof uploadTargets)[number];

/** The hash an upload's reply carries: SHA-256, or CRC-32 (IEEE) when the request asks for it. */
export const updateHashes = ["sha256", "crc32"] as const;
export type UpdateHash = (typeof updateHashes)[number];

/** The request header that asks for a CRC-32 reply (Node lowercases header names). */
export const updateHashHeader = "x-gokrazy-update-hash";

/**
 * Features a unit lists in `GET /update/features`: PARTUUID root names, the
 * CRC-32 hash choice, and rtr7's own `gzip`: uploads may come with
 * `Content-Encoding: gzip` (the hash in the reply is still of the image,
 * uncompressed), and `signed`: the unit takes a release's signed manifest
 * (`PUT /update/manifest`) and key rotations (`/update/trust`), and once it
 * trusts a key boots only signed releases. gokrazy's clients ignore
 * features they do not know.
 */
export const updateFeatures = ["partuuid", "updatehash", "gzip", "signed"] as const;
export type UpdateFeature = (typeof updateFeatures)[number];

/** The features reply as gokrazy writes it: comma-separated, with a trailing comma. */
export const updateFeaturesText = updateFeatures.map((feature) => `${feature},`).join("");

/** The Content-Type of the update API's JSON replies, exactly as gokrazy's updater requires it. */
export const jsonContentType = "application/json";
