// The update API's routes for signed releases (rtr7's own; gokrazy's
// clients never call them, and `signed` in /update/features says they are
// here):
//   GET /update/trust     {keys: [key ids], running: {slot, version, signedAtMs?, keyId?}, pending?}
//   PUT /update/trust     {publicKey, signature}: a key rotation statement (200: {changed, keys, added?, removed?})
//   PUT /update/manifest  {manifest, signature, allowDowngrade?}: the release's manifest.json text and .minisig
// Bodies are small JSON, read whole within a bound (64 KiB) before the
// update lock is taken; the changes (trusted keys, the pending release)
// are made under it. The policy is release-gate.ts's and signed-release.ts's;
// nothing here logs more than key ids and versions (signatures are not
// secret, but a log needs none of them).
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Rtr7Error, describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import { sendJson } from "./http-errors.js";
import type { ManifestRequest, ReleaseGate } from "./release-gate.js";

export const trustBodyLimit = 64 * 1024;

export interface TrustRoutesDeps {
  gate: ReleaseGate;
  log: Logger;
  lock: { acquire(what: string): void; release(): void };
  /** The request's body, whole, at most `maxBytes`. */
  readBody: (request: FastifyRequest, reply: FastifyReply, what: string, maxBytes: number) => Promise<Buffer>;
  /** Throws 400 (with Allow) unless the request uses one of `methods`. */
  requireMethod: (request: FastifyRequest, reply: FastifyReply, ...methods: ("GET" | "PUT")[]) => void;
  /** The version the running slot reports, for a slot without a release record. */
  runningVersion: () => Promise<string | undefined>;
}

export function installTrustRoutes(app: FastifyInstance, deps: TrustRoutesDeps): void {
  const { gate, log, lock } = deps;

  const jsonBody = async (
    request: FastifyRequest,
    reply: FastifyReply,
    what: string,
  ): Promise<Record<string, unknown>> => {
    const body = await deps.readBody(request, reply, what, trustBodyLimit);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString("utf8"));
    } catch (error) {
      throw new Rtr7Error(
        "RTR7_ERR_UPDATE_REQUEST",
        `${what}: the body is not JSON (${describeError(error)})`,
      );
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
      throw new Rtr7Error("RTR7_ERR_UPDATE_REQUEST", `${what}: want a JSON object`);
    return parsed as Record<string, unknown>;
  };
  const text = (body: Record<string, unknown>, field: string, what: string): string => {
    const value = body[field];
    if (typeof value !== "string" || value === "")
      throw new Rtr7Error("RTR7_ERR_UPDATE_REQUEST", `${what}: want "${field}" as a non-empty string`);
    return value;
  };
  const locked = async <T>(what: string, action: () => Promise<T>): Promise<T> => {
    lock.acquire(what);
    try {
      return await action();
    } finally {
      lock.release();
    }
  };

  app.all("/update/trust", async (request, reply) => {
    deps.requireMethod(request, reply, "GET", "PUT");
    if (request.method === "GET") return sendJson(reply, await gate.facts(await deps.runningVersion()));
    const what = "PUT /update/trust";
    const body = await jsonBody(request, reply, what);
    const statement = { publicKey: text(body, "publicKey", what), signature: text(body, "signature", what) };
    const outcome = await locked(what, () => gate.rotate(statement));
    const keys = (await gate.trustedKeys()).map((key) => key.keyId);
    log.info(
      { peer: request.ip, event: "trust", ...outcome },
      outcome.changed
        ? `${what}: key ${outcome.added ?? ""} replaces ${outcome.removed ?? ""}`
        : `${what}: the statement's key is already trusted; nothing changed`,
    );
    return sendJson(reply, { ...outcome, keys });
  });

  app.all("/update/manifest", async (request, reply) => {
    deps.requireMethod(request, reply, "PUT");
    const what = "PUT /update/manifest";
    const body = await jsonBody(request, reply, what);
    const allowDowngrade = body.allowDowngrade ?? false;
    if (typeof allowDowngrade !== "boolean")
      throw new Rtr7Error("RTR7_ERR_UPDATE_REQUEST", `${what}: want "allowDowngrade" as true or false`);
    const manifestRequest: ManifestRequest = {
      manifest: text(body, "manifest", what),
      signature: typeof body.signature === "string" ? body.signature : "",
      allowDowngrade,
    };
    const pending = await locked(what, () => gate.acceptManifest(manifestRequest));
    const by = pending.verified
      ? `signed by key ${pending.keyId ?? "?"}`
      : "unverified: the unit trusts no key";
    log.info(
      {
        peer: request.ip,
        event: "manifest",
        version: pending.version,
        keyId: pending.keyId,
        slot: pending.slot,
      },
      `${what}: release ${pending.version} for slot ${pending.slot} (${by})${allowDowngrade ? ", downgrade allowed" : ""}`,
    );
    return sendJson(reply, {
      ok: true,
      slot: pending.slot,
      version: pending.version,
      verified: pending.verified,
      ...(pending.keyId === undefined ? {} : { keyId: pending.keyId, signedAtMs: pending.signedAtMs }),
    });
  });
}
