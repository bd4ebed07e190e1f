// The unit target's side of signed releases (rtr7 units that list the
// `signed` feature): GET /update/trust (the keys the unit trusts and the
// signed release it runs), PUT /update/trust (a key rotation statement the
// old key signed) and PUT /update/manifest (a release's manifest.json text,
// exact bytes, and its .minisig, before the images). Small JSON exchanges
// over the same transport as control.ts; a refusal comes back as the unit's
// own catalogued error (RTR7_ERR_SIGNATURE, RTR7_ERR_DOWNGRADE), read from
// its JSON body by unit-errors.ts.
import { Rtr7Error } from "../../lib/errors.js";
import type { RotationStatement } from "../../lib/trust/release-signature.js";
import { jsonContentType } from "../../lib/wire/update-protocol.js";
import { smallExchange, where, type UnitContext } from "./context.js";
import { redact, unitAnswerError } from "./unit-errors.js";

export interface UnitTrust {
  /** The key ids the unit trusts; none: it takes unsigned updates, as gokrazy's units do. */
  keys: string[];
  /** The slot it runs and, once a signed release was booted there, that release. */
  running: { slot: string; version?: string; signedAtMs?: number; keyId?: string };
}

export interface KeyIntroduction {
  /** false: the unit trusted the statement's key already, and nothing changed. */
  changed: boolean;
  added?: string;
  removed?: string;
  keys: string[];
}

export interface ManifestAccepted {
  /** The slot the release is recorded for (the inactive one). */
  slot: string;
  version: string;
  /** false: the unit trusts no key and recorded the manifest without checking a signature. */
  verified: boolean;
  keyId?: string;
  signedAtMs?: number;
}

export interface SendManifestOptions {
  /** manifest.json as it is on disk: the unit verifies these exact bytes. */
  manifest: Buffer | string;
  /** manifest.json.minisig's text. */
  signature: string;
  /** Take a release signed before the one the unit runs. */
  allowDowngrade?: boolean;
}

async function exchange(
  unit: UnitContext,
  method: "GET" | "PUT",
  route: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const step = `${method} ${route}`;
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const reply = await smallExchange(unit, {
    method,
    path: route,
    step,
    headers: { accept: jsonContentType, ...(payload ? { "content-type": jsonContentType } : {}) },
    ...(payload ? { body: payload } : {}),
  });
  if (reply.status !== 200)
    throw unitAnswerError(where(unit), step, reply.status, reply.contentType, reply.body, unit.secrets);
  try {
    const parsed = JSON.parse(reply.body) as unknown;
    if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed))
      return parsed as Record<string, unknown>;
  } catch {
    // Reported below.
  }
  throw new Rtr7Error(
    "RTR7_ERR_UNIT_FAILED",
    `${step} to ${where(unit)}: the unit answered 200 without a JSON object: ${redact(reply.body, unit.secrets).slice(0, 200)}`,
  );
}

function keyList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((key): key is string => typeof key === "string") : [];
}

export async function fetchTrust(unit: UnitContext): Promise<UnitTrust> {
  const reply = await exchange(unit, "GET", "/update/trust");
  const running = (reply.running ?? {}) as UnitTrust["running"];
  return {
    keys: keyList(reply.keys),
    running: { ...running, slot: typeof running.slot === "string" ? running.slot : "" },
  };
}

export async function introduceKey(
  unit: UnitContext,
  statement: RotationStatement,
): Promise<KeyIntroduction> {
  const reply = await exchange(unit, "PUT", "/update/trust", {
    publicKey: statement.publicKey,
    signature: statement.signature,
  });
  const introduced: KeyIntroduction = { changed: reply.changed === true, keys: keyList(reply.keys) };
  if (typeof reply.added === "string") introduced.added = reply.added;
  if (typeof reply.removed === "string") introduced.removed = reply.removed;
  unit.log.debug(
    { event: "trust", ...introduced },
    introduced.changed
      ? `PUT /update/trust: key ${introduced.added ?? "?"} replaces ${introduced.removed ?? "?"}`
      : "PUT /update/trust: the key was trusted already",
  );
  return introduced;
}

export async function sendManifest(
  unit: UnitContext,
  options: SendManifestOptions,
): Promise<ManifestAccepted> {
  const manifest =
    typeof options.manifest === "string" ? options.manifest : options.manifest.toString("utf8");
  const reply = await exchange(unit, "PUT", "/update/manifest", {
    manifest,
    signature: options.signature,
    ...(options.allowDowngrade === true ? { allowDowngrade: true } : {}),
  });
  const accepted: ManifestAccepted = {
    slot: typeof reply.slot === "string" ? reply.slot : "",
    version: typeof reply.version === "string" ? reply.version : "",
    verified: reply.verified === true,
  };
  if (typeof reply.keyId === "string") accepted.keyId = reply.keyId;
  if (typeof reply.signedAtMs === "number") accepted.signedAtMs = reply.signedAtMs;
  return accepted;
}
