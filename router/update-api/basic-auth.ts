// HTTP Basic authentication for the update API (user "gokrazy", as
// gokrazy's tools send it). Hand-written rather than @fastify/basic-auth:
// the plugin parses the header and leaves the comparison to a callback
// anyway, and routing its 401 through the catalogue's RTR7_ERR_UPDATE_AUTH
// (with Connection: close for an unread body) would take as much code as
// this. User and password are compared through their SHA-256 digests with
// crypto.timingSafeEqual, so neither the time taken nor a length mismatch
// tells a guesser anything.
import { createHash, timingSafeEqual } from "node:crypto";
import { updateUser } from "../../lib/wire/update-protocol.js";

export { updateUser };
export const basicRealm = "gokrazy";

export interface Credentials {
  user: string;
  password: string;
}

/** The user and password of an `Authorization: Basic ...` header, or undefined when it is not one. */
export function parseBasicAuthorization(header: string | undefined): Credentials | undefined {
  if (header === undefined) return undefined;
  const match = /^Basic[ \t]+([A-Za-z0-9+/=._~-]+)[ \t]*$/i.exec(header);
  if (!match?.[1]) return undefined;
  const decoded = Buffer.from(match[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/** A checker for one password: true when the header names user gokrazy with it. */
export function basicAuthChecker(password: string): (header: string | undefined) => boolean {
  const wantUser = digest(updateUser);
  const wantPassword = digest(password);
  return (header) => {
    const given = parseBasicAuthorization(header);
    if (!given) return false;
    // Both comparisons always run.
    const userOk = timingSafeEqual(digest(given.user), wantUser);
    const passwordOk = timingSafeEqual(digest(given.password), wantPassword);
    return userOk && passwordOk;
  };
}
