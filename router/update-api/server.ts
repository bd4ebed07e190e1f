// The unit's update API (fastify), wire-compatible with gokrazy's update
// protocol so gokrazy's updater and gok work against it unchanged:
//   GET  /update/features                 "partuuid,updatehash,gzip,signed," (JSON with Accept: application/json)
//   PUT  /update/root|boot|bootonly|mbr   body → target; reply = lowercase hex hash, nothing else
//   POST /update/switch|testboot|commit   BootControl, after checking the inactive slot is bootable
//   GET|PUT /update/trust, PUT /update/manifest   signed releases (trust-routes.ts)
// A unit that trusts a key (/perm/rtr7/trusted-keys/) checks every upload
// against a pending signed manifest and boots only a slot whose release
// was signed (release-gate.ts, signed-release.ts); one that trusts none
// behaves as gokrazy's units do.
//   POST /reboot                          reply 200, then BootControl.reboot
//   GET  /                                status page
// Every route needs HTTP Basic auth (user gokrazy); a failed check is
// answered before any body byte is read, and without "100 Continue". One
// update at a time: an upload, switch, testboot, commit or reboot while
// another runs gets 409 at once, its body unread. Wrong methods get 400, as
// gokrazy answers them (its clients and scripts see the same status); the
// Allow header names the right one. Every error is answered with the
// catalogue's status and rtr7's one JSON body (lib/http-error.ts), and every
// JSON reply carries exactly `Content-Type: application/json`, the header
// gokrazy's updater insists on. The caller listens; fastify's own logger
// is off, and nothing here logs a header, so neither the password nor the
// Authorization header ever reaches a log.
import type { IncomingMessage, ServerResponse } from "node:http";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { Rtr7Error, describeError } from "../../lib/errors.js";
import { installErrorHandlers, requestLine } from "../../lib/http-error.js";
import type { DiskDevice } from "../../lib/disk/device.js";
import { formatBytes, type Logger } from "../../lib/log.js";
import type { BootControl } from "../boot/boot-control.js";
import { otherSlot, type ServiceConfig, type Slot, type UnitPaths } from "../unit.js";
import { sendJson, wantsJson } from "./http-errors.js";
import { parseRebootForm, parseTestbootForm } from "./reboot-form.js";
import { checkBootable } from "./slot-state.js";
import { gatherStatusFacts, renderStatusPage, type StatusPageInfo } from "./status-page.js";
import { uploadBoot, type BootWrite } from "./boot-upload.js";
import { ReleaseGate } from "./release-gate.js";
import type { SignedImage } from "./release-state.js";
import { installTrustRoutes } from "./trust-routes.js";
import { UpdateLock } from "./update-lock.js";
import { gunzipped, uploadEncoding } from "./upload-encoding.js";
import {
  uploadMbr,
  uploadRoot,
  type UploadContext,
  type UploadOutcome,
  type UploadRequest,
} from "./uploads.js";
import {
  defaultUploadPace,
  hashHeader,
  readSmallBody,
  requestedHashAlgorithm,
  type IdleLimit,
} from "./write-target.js";
import { updateFeaturesText } from "../../lib/wire/update-protocol.js";
import { installPasswordGuard } from "../http-guard/password-guard.js";
import { guardUnitApp } from "../http-guard/serve.js";

export const updateFeatures = updateFeaturesText;

export interface UpdateEvent {
  kind: "upload" | "switch" | "testboot" | "commit" | "reboot";
  /** upload: "root", "boot", "bootonly" or "mbr"; switch/testboot/commit: the slot. */
  target?: string;
  ok: boolean;
  message?: string;
}

export interface UpdateApiDeps {
  paths: UnitPaths;
  boot: BootControl;
  password: string;
  /** Where the caller listens, for the status page. */
  address?: string;
  /** The unit's hostname and listen config, for the request guard's Host check (router/http-guard). */
  unit?: Pick<ServiceConfig, "hostname" | "address" | "listen">;
  /**
   * For `npm run bench` only, which measures what the guard costs: no
   * source, Host or cross-site checks. The password is checked all the same.
   */
  withoutRequestGuard?: boolean;
  log: Logger;
  /** Each upload, switch, testboot, commit and reboot, when it has ended (the supervisor counts them). */
  onEvent?: (event: UpdateEvent) => void;
  statusPage?: () => Promise<StatusPageInfo>;
  /** An upload that sends nothing for this long is ended as truncated (default 60 s). */
  uploadIdleTimeoutMs?: number;
  /** The rest of the limits on a body's pace (write-target.ts's defaultUploadPace). */
  uploadPace?: Partial<Omit<IdleLimit, "onTimeout" | "timeoutMs">>;
  now?: () => Date;
  /** The disk the slots, boot partition and MBR are on; default node:fs (tests inject one that flips a byte). */
  disk?: DiskDevice;
  /** How boot uploads are written; default what /perm/rtr7/update.json says, else "files". */
  bootWrite?: BootWrite;
}

type UploadKind = "root" | "boot" | "bootonly" | "mbr";

const uploads: Record<
  UploadKind,
  (context: UploadContext, request: UploadRequest) => Promise<UploadOutcome>
> = {
  root: uploadRoot,
  boot: uploadBoot,
  bootonly: uploadBoot,
  mbr: uploadMbr,
};

/** The manifest entry each upload is compared with. */
const signedImageOf: Record<UploadKind, SignedImage> = {
  root: "root",
  boot: "boot",
  bootonly: "boot",
  mbr: "mbr",
};

const rebootFormLimit = 4096;

export function buildUpdateApi(deps: UpdateApiDeps): FastifyInstance {
  const log = deps.log.child({ subsystem: "update-api" });
  const lock = new UpdateLock();
  const now = deps.now ?? (() => new Date());
  const context: UploadContext = {
    paths: deps.paths,
    boot: deps.boot,
    log,
    now,
    disk: deps.disk,
    bootWrite: deps.bootWrite,
  };
  const gate = new ReleaseGate(context, deps.unit?.hostname);
  const pace = {
    ...defaultUploadPace,
    ...(deps.uploadIdleTimeoutMs === undefined ? {} : { timeoutMs: deps.uploadIdleTimeoutMs }),
    ...deps.uploadPace,
  };
  /** The limits for one request's body: cut off, its socket is destroyed. */
  const limitFor = (request: FastifyRequest): IdleLimit => ({
    ...pace,
    onTimeout: () => request.raw.socket.destroy(),
  });
  const app = Fastify({ logger: false, return503OnClosing: true });

  const emit = (event: UpdateEvent): void => {
    try {
      deps.onEvent?.(event);
    } catch (error) {
      log.error({ err: error }, "an update event listener failed");
    }
  };

  // Uploads arrive as a raw stream of any content type (or none), read by the
  // route itself, never buffered by fastify and so never under its body limit.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, _payload, done) => done(null, undefined));

  // "Expect: 100-continue" (curl sends it for larger uploads): the body is
  // invited only when a route is about to read it, so a request refused
  // first (no credentials, busy, too large, wrong method) is answered with
  // its final status and its body is never sent.
  const awaitingContinue = new WeakSet<IncomingMessage>();
  app.server.on("checkContinue", (request: IncomingMessage, response: ServerResponse) => {
    awaitingContinue.add(request);
    app.server.emit("request", request, response);
  });
  const inviteBody = (request: FastifyRequest, reply: FastifyReply) => (): void => {
    if (awaitingContinue.delete(request.raw)) reply.raw.writeContinue();
  };

  /** The urlencoded form of a POST: its query and (when sent as a form) its small body. */
  const readForm = async (
    request: FastifyRequest,
    reply: FastifyReply,
    what: string,
  ): Promise<{ query: string; body: string }> => {
    const query = request.url.includes("?") ? request.url.slice(request.url.indexOf("?") + 1) : "";
    const isForm = /^application\/x-www-form-urlencoded\b/i.test(request.headers["content-type"] ?? "");
    const body = isForm
      ? await readSmallBody(request.raw, {
          maxBytes: rebootFormLimit,
          what,
          expectedLength: contentLength(request),
          idle: limitFor(request),
          beforeRead: inviteBody(request, reply),
        })
      : Buffer.alloc(0);
    return { query, body: body.toString("utf8") };
  };

  const errorOptions = {
    log,
    requestCode: "RTR7_ERR_UPDATE_REQUEST",
    notFoundHint:
      "The update API serves /update/features, /update/{root,boot,bootonly,mbr,manifest} (PUT), /update/trust (GET, PUT), /update/{switch,testboot,commit} and /reboot (POST), and / (the status page).",
  } as const;

  // Who may ask (sources, Host, cross-site changes), then the password.
  if (deps.withoutRequestGuard !== true)
    guardUnitApp(app, deps.unit ?? { hostname: "localhost", address: "127.0.0.1" }, log);
  installPasswordGuard(app, { password: deps.password, errorOptions });

  installErrorHandlers(app, errorOptions);

  const requireMethod = (
    request: FastifyRequest,
    reply: FastifyReply,
    ...methods: ("GET" | "PUT" | "POST")[]
  ): void => {
    if (methods.includes(request.method as "GET")) return;
    void reply.header("allow", methods.join(", "));
    throw new Rtr7Error(
      "RTR7_ERR_UPDATE_REQUEST",
      `${requestLine(request)}: expected a ${methods.join(" or ")} request`,
    );
  };

  const inactiveSlot = (): Slot => otherSlot(deps.boot.running().slot);

  app.all("/update/features", (request, reply) => {
    if (wantsJson(request.headers.accept)) {
      return sendJson(reply, { features: updateFeatures, EEPROM: null });
    }
    return reply.type("text/plain; charset=utf-8").send(updateFeatures);
  });

  for (const kind of Object.keys(uploads) as UploadKind[]) {
    const url = `/update/${kind}`;
    app.all(url, async (request, reply) => {
      requireMethod(request, reply, "PUT");
      lock.acquire(`PUT ${url}`);
      const peer = request.ip;
      try {
        const gzipped = uploadEncoding(request.headers["content-encoding"], url) === "gzip";
        const checkImage = await gate.beforeUpload(signedImageOf[kind], `PUT ${url}`);
        const outcome = await uploads[kind](context, {
          source: gzipped ? gunzipped(request.raw) : request.raw,
          algorithm: requestedHashAlgorithm(request.headers[hashHeader]),
          // Content-Length counts the compressed bytes: the image's own length is unknown.
          contentLength: gzipped ? undefined : contentLength(request),
          idle: limitFor(request),
          beforeRead: inviteBody(request, reply),
          checkImage,
        });
        const notes = outcome.notes.length > 0 ? ` (${outcome.notes.join("; ")})` : "";
        log.info(
          { peer, event: "upload", target: kind, bytes: outcome.bytes, hash: outcome.hash },
          `${url}: wrote ${formatBytes(outcome.bytes)} to ${outcome.target}${notes}`,
        );
        emit({
          kind: "upload",
          target: kind,
          ok: true,
          message: `${outcome.target}: ${outcome.bytes} bytes${notes}`,
        });
        // Only the hex digits: gokrazy's updater hex-decodes the whole body.
        return reply.type("text/plain; charset=utf-8").send(outcome.hash);
      } catch (error) {
        emit({ kind: "upload", target: kind, ok: false, message: describeError(error) });
        throw error;
      } finally {
        lock.release();
      }
    });
  }

  // A boot action's form is read before the update lock is taken: a client
  // that sends its form slowly holds nothing but its own request.
  const bootAction = <Input>(
    url: string,
    kind: "switch" | "testboot" | "commit",
    prepare: (request: FastifyRequest, reply: FastifyReply) => Promise<Input>,
    act: (input: Input) => Promise<{ slot: Slot; message: string }>,
  ): void => {
    app.all(url, async (request, reply) => {
      requireMethod(request, reply, "POST");
      const input = await prepare(request, reply);
      lock.acquire(`POST ${url}`);
      try {
        const { slot, message } = await act(input);
        log.info({ peer: request.ip, event: kind, slot }, `${url}: ${message}`);
        emit({ kind, target: slot, ok: true, message });
        if (wantsJson(request.headers.accept)) return sendJson(reply, { ok: true, slot, message });
        return reply.type("text/plain; charset=utf-8").send(`${message}\n`);
      } catch (error) {
        emit({ kind, ok: false, message: describeError(error) });
        throw error;
      } finally {
        lock.release();
      }
    });
  };

  const noInput = (): Promise<undefined> => Promise.resolve(undefined);
  bootAction("/update/switch", "switch", noInput, async () => {
    const slot = inactiveSlot();
    await checkBootable(deps.paths, slot);
    await gate.beforeBoot("switch", slot);
    await deps.boot.switchTo(slot);
    return { slot, message: `slot ${slot} is now the default: the next boot runs it` };
  });
  bootAction(
    "/update/testboot",
    "testboot",
    async (request, reply) => {
      const { query, body } = await readForm(request, reply, "POST /update/testboot form");
      return parseTestbootForm(query, body);
    },
    async (deadlineMs) => {
      const slot = inactiveSlot();
      await checkBootable(deps.paths, slot);
      await gate.beforeBoot("testboot", slot);
      await deps.boot.testboot(slot, { deadlineMs });
      const within = deadlineMs === undefined ? "" : ` within ${Math.round(deadlineMs / 1000)} s`;
      return {
        slot,
        message: `the next reboot runs slot ${slot} once, on trial; commit it${within} once it is healthy`,
      };
    },
  );
  bootAction("/update/commit", "commit", noInput, async () => {
    await gate.beforeCommit();
    const slot = await deps.boot.commit();
    return { slot, message: `slot ${slot} is committed` };
  });

  installTrustRoutes(app, {
    gate,
    log,
    lock,
    requireMethod,
    readBody: (request, reply, what, maxBytes) =>
      readSmallBody(request.raw, {
        maxBytes,
        what,
        expectedLength: contentLength(request),
        idle: limitFor(request),
        beforeRead: inviteBody(request, reply),
      }),
    runningVersion: async () => (await deps.statusPage?.().catch(() => undefined))?.version,
  });

  app.all("/reboot", async (request, reply) => {
    requireMethod(request, reply, "POST");
    const { query, body } = await readForm(request, reply, "POST /reboot form");
    const form = parseRebootForm(query, body);
    lock.acquire("POST /reboot");
    try {
      await deps.boot.checkReboot({ kexec: form.kexec });
    } catch (error) {
      lock.release();
      throw error;
    }
    const { kexec } = form;
    log.info(
      { peer: request.ip, event: "reboot", kexec, async: form.async, waitPerSignalMs: form.waitPerSignalMs },
      `/reboot: rebooting${kexec ? " with kexec" : " through the firmware"}`,
    );
    // The reply goes out first: rebooting stops this service too. The lock
    // stays held while the reboot is under way, so no update can start
    // behind it; it is released only when the reboot fails.
    reply.raw.once("close", () => {
      deps.boot.reboot({ kexec }).then(
        () => emit({ kind: "reboot", ok: true, message: kexec ? "kexec" : "firmware" }),
        (error: unknown) => {
          log.error({ err: error }, `/reboot: the reboot failed: ${describeError(error)}`);
          emit({ kind: "reboot", ok: false, message: describeError(error) });
          lock.release();
        },
      );
    });
    return reply.type("text/plain; charset=utf-8").send(`rebooting (kexec ${kexec ? "on" : "off"})\n`);
  });

  app.get("/", async (request, reply) => {
    const facts = await gatherStatusFacts({
      statusPage: deps.statusPage,
      boot: deps.boot,
      perm: deps.paths.perm,
    });
    if (wantsJson(request.headers.accept))
      return sendJson(reply, { ...facts, address: deps.address, busy: lock.busyWith });
    return reply.type("text/html; charset=utf-8").send(renderStatusPage(facts));
  });

  return app;
}

function contentLength(request: FastifyRequest): number | undefined {
  const header = request.headers["content-length"];
  if (header === undefined || request.headers["transfer-encoding"] !== undefined) return undefined;
  const value = Number(header);
  return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}
