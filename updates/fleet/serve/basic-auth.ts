// HTTP basic auth for `rtr7 fleet serve`'s guarded routes: the admin's
// (publishing releases, rollouts, enrolling units) and each unit's own
// (uploading its backup). The password is compared in constant time and
// never logged; a missing or wrong one is RTR7_ERR_FLEET_AUTH (401, with a
// WWW-Authenticate challenge), the same answer for a wrong user and a
// wrong password, so the reply does not tell which units exist.
import { timingSafeEqual, createHash } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import { Rtr7Error } from "../../../lib/errors.js";

export interface BasicCredentials {
  username: string;
  password: string;
}

/** The user and password of an Authorization: Basic header, or undefined. */
export function basicCredentials(header: string | undefined): BasicCredentials | undefined {
  const match = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(header?.trim() ?? "");
  if (!match) return undefined;
  const decoded = Buffer.from(match[1] ?? "", "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Constant-time equality of two secrets (hashed first, so their lengths do not leak either). */
export function sameSecret(a: string, b: string): boolean {
  const digest = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest();
  return timingSafeEqual(digest(a), digest(b));
}

export function authorizationHeader(credentials: BasicCredentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`, "utf8").toString("base64")}`;
}

/**
 * A fastify onRequest hook that lets through only requests `check` accepts;
 * `realm` names what the credential is in the challenge.
 */
export function requireBasicAuth(
  realm: string,
  check: (credentials: BasicCredentials, request: FastifyRequest) => boolean | Promise<boolean>,
): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  return async (request, reply) => {
    const credentials = basicCredentials(request.headers.authorization);
    if (credentials && (await check(credentials, request))) return;
    void reply.header("www-authenticate", `Basic realm="${realm}"`);
    throw new Rtr7Error(
      "RTR7_ERR_FLEET_AUTH",
      `${request.method} ${request.url.split("?")[0] ?? ""}: ${credentials ? "wrong credential" : "no credential"} (${realm})`,
    );
  };
}
