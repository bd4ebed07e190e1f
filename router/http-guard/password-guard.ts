// The update API's password in front of a unit service (the update API and
// backupd): HTTP Basic as user gokrazy, 401 with WWW-Authenticate without
// it, and an address that keeps guessing gets 429 for the rest of the
// window (login-limiter.ts), with the log summed up instead of a line per
// guess. One hook for both services, so they cannot drift apart.
import type { FastifyInstance } from "fastify";
import { Rtr7Error } from "../../lib/errors.js";
import { replyWithError, requestLine, type ErrorReplyOptions } from "../../lib/http-error.js";
import { basicAuthChecker, basicRealm, updateUser } from "../update-api/basic-auth.js";
import { LoginLimiter, type LoginLimits } from "./login-limiter.js";

export interface PasswordGuardOptions {
  password: string;
  errorOptions: ErrorReplyOptions;
  /** What the password is, for the 401's message ("the update API's password"). */
  what?: string;
  limits?: LoginLimits;
  now?: () => number;
}

export function installPasswordGuard(app: FastifyInstance, options: PasswordGuardOptions): LoginLimiter {
  const authorized = basicAuthChecker(options.password);
  const limiter = new LoginLimiter(options.errorOptions.log, options.limits, options.now);
  const quiet = { ...options.errorOptions, log: options.errorOptions.log.child({}, { level: "error" }) };
  app.addHook("onRequest", async (request, reply) => {
    const blockedMs = limiter.blockedFor(request.ip);
    if (blockedMs > 0) {
      void reply.header("retry-after", Math.ceil(blockedMs / 1000));
      return replyWithError(
        request,
        reply,
        new Rtr7Error(
          "RTR7_ERR_UPDATE_LOGIN_LIMIT",
          `${requestLine(request)}: too many wrong passwords from ${request.ip}; try again in ${Math.ceil(blockedMs / 1000)} s`,
        ),
        quiet,
      );
    }
    if (authorized(request.headers.authorization)) return;
    // A client's first request often comes without credentials (curl
    // --anyauth, browsers): only a wrong password counts as a guess.
    if (request.headers.authorization !== undefined) limiter.failed(request.ip, requestLine(request));
    void reply.header("www-authenticate", `Basic realm="${basicRealm}"`);
    return replyWithError(
      request,
      reply,
      new Rtr7Error(
        "RTR7_ERR_UPDATE_AUTH",
        `${requestLine(request)}: ${request.headers.authorization === undefined ? "no credentials" : "wrong credentials"} (HTTP Basic, user ${updateUser}${options.what === undefined ? "" : `, ${options.what}`})`,
      ),
      quiet,
    );
  });
  return limiter;
}
