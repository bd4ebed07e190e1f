// Checks every request to the unit's HTTP services makes before a route
// sees it, and the headers every answer carries:
// - the source: only hosts that can be on the unit's side (sources.ts);
// - the Host header: one of the unit's names or addresses, so a web page on
//   another name cannot reach the unit through DNS rebinding (a request
//   with no Host at all, from a plain HTTP/1.0 tool, is no browser's);
// - a state-changing request (anything but GET, HEAD and OPTIONS) that a
//   browser marks as cross-site (`Sec-Fetch-Site: cross-site`) or whose
//   `Origin` names another host is refused: a browser that cached the
//   status page's Basic credentials must not let any web page commit a
//   trial, switch a slot or reboot the unit;
// - pages may not be framed, sniffed into another type, or load anything
//   but their own inline style (X-Frame-Options, X-Content-Type-Options,
//   Content-Security-Policy).
// Refusals are catalogued errors in rtr7's one error shape.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Rtr7Error } from "../../lib/errors.js";
import { replyWithError } from "../../lib/http-error.js";
import type { Logger } from "../../lib/log.js";
import { quoteInput } from "../../lib/quote.js";
import type { SourcePolicy } from "./sources.js";

export interface RequestGuardOptions {
  sources: SourcePolicy;
  /** Lower-case names and addresses the Host header may carry (port not included). */
  hostNames: () => ReadonlySet<string>;
  log: Logger;
}

const safeMethods = new Set(["GET", "HEAD", "OPTIONS"]);

export const securityHeaders = {
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "content-security-policy":
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "referrer-policy": "no-referrer",
} as const;

/** The host part of a Host header or an Origin's authority, lower-case, without port or brackets. */
export function hostOf(authority: string): string {
  const text = authority.trim().toLowerCase();
  if (text.startsWith("[")) return text.slice(1, text.indexOf("]") < 0 ? undefined : text.indexOf("]"));
  const colon = text.lastIndexOf(":");
  return colon >= 0 && text.indexOf(":") === colon ? text.slice(0, colon) : text;
}

/** The host of an Origin header ("http://10.0.0.1:80" → "10.0.0.1"), or undefined for "null" or junk. */
function originHost(origin: string): string | undefined {
  try {
    return hostOf(new URL(origin).host);
  } catch {
    return undefined;
  }
}

/** Why a request is refused, or undefined when it may go on. */
export function refusal(
  request: Pick<FastifyRequest, "ip" | "method" | "headers">,
  options: Omit<RequestGuardOptions, "log">,
): Rtr7Error | undefined {
  if (!options.sources.allows(request.ip))
    return new Rtr7Error(
      "RTR7_ERR_HTTP_SOURCE",
      `requests from ${request.ip} are not answered: it is not a loopback, private or link-local address`,
    );
  const host = request.headers.host;
  if (host !== undefined && !options.hostNames().has(hostOf(host)))
    return new Rtr7Error(
      "RTR7_ERR_HTTP_HOST",
      `Host ${quoteInput(host)} is not one of this unit's names or addresses`,
    );
  if (safeMethods.has(request.method)) return undefined;
  const fetchSite = request.headers["sec-fetch-site"];
  if (fetchSite === "cross-site")
    return new Rtr7Error(
      "RTR7_ERR_HTTP_CROSS_SITE",
      `a ${request.method} from another site (Sec-Fetch-Site: cross-site)`,
    );
  const origin = request.headers.origin;
  if (origin !== undefined) {
    const from = originHost(origin);
    const to = host === undefined ? undefined : hostOf(host);
    if (from === undefined || from !== to)
      return new Rtr7Error(
        "RTR7_ERR_HTTP_CROSS_SITE",
        `a ${request.method} from a page of ${quoteInput(origin)}, not of this unit`,
      );
  }
  return undefined;
}

/** Adds the checks and the headers to `app` (before its routes run). */
export function installRequestGuard(app: FastifyInstance, options: RequestGuardOptions): void {
  app.addHook("onRequest", async (request: FastifyRequest, reply: FastifyReply) => {
    const refused = refusal(request, options);
    if (refused === undefined) return;
    await replyWithError(request, reply, refused, { log: options.log });
    return reply;
  });
  app.addHook("onSend", async (_request, reply, payload) => {
    for (const [name, value] of Object.entries(securityHeaders)) void reply.header(name, value);
    return payload;
  });
}
