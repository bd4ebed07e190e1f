// GET /update/features, asked once when a unit is opened: gokrazy's list of
// optional protocol features, comma-separated with a trailing comma
// ("partuuid,updatehash,"). A unit without the endpoint (404) supports
// none, as gokrazy's updater assumes. The hash of uploads follows from it:
// CRC-32 when the unit lists `updatehash` (cheaper on a small unit), else
// SHA-256.
import { updateFeatures, type UpdateFeature, type UpdateHash } from "../../lib/wire/update-protocol.js";
import { smallExchange, where, type UnitContext } from "./context.js";
import { unitAnswerError } from "./unit-errors.js";

/** The features rtr7 knows, as typed constants: "partuuid", "updatehash". */
export const unitFeatures = updateFeatures;
export type UnitFeature = UpdateFeature;

export interface UnitFeatures {
  /** The unit's answer as it came, trimmed ("" when it has no such endpoint). */
  raw: string;
  /** Every feature the unit listed, known to rtr7 or not. */
  listed: ReadonlySet<string>;
  /** The hash uploads use. */
  hash: UpdateHash;
}

export function parseFeatures(text: string): UnitFeatures {
  const raw = text.trim();
  const listed = new Set(
    raw
      .split(",")
      .map((feature) => feature.trim())
      .filter((feature) => feature !== ""),
  );
  return { raw, listed, hash: listed.has("updatehash") ? "crc32" : "sha256" };
}

export async function fetchFeatures(unit: UnitContext): Promise<UnitFeatures> {
  const step = "GET /update/features";
  // Plain text, as gokrazy's updater asks first; the JSON form adds nothing rtr7 needs.
  const reply = await smallExchange(unit, { method: "GET", path: "/update/features", step });
  if (reply.status === 404) return parseFeatures("");
  if (reply.status !== 200)
    throw unitAnswerError(where(unit), step, reply.status, reply.contentType, reply.body, unit.secrets);
  return parseFeatures(reply.body);
}
