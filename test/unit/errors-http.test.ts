// Errors as the wire contract: lib/http-error.ts turns anything thrown into
// the catalogue's status and the one body {code, message, hint}, and reads
// that body back for clients; the update API answers its errors that way,
// and its JSON replies (features, the status, errors) carry exactly
// `Content-Type: application/json`, the header gokrazy's updater requires
// (defect 3 of issue 10: it logged "could not get EEPROM version" on every
// run against `application/json; charset=utf-8`). All through inject().
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import type { TestContext } from "node:test";
import { errorCatalogue, Rtr7Error, type ErrorCode } from "../../lib/errors.js";
import { asRtr7Error, errorBody, parseErrorBody } from "../../lib/http-error.js";
import { silentLogger } from "../../lib/log.js";
import { buildUpdateApi } from "../../router/update-api/server.js";
import { FakeBootControl } from "../integration/update-api-fixture.js";
import { scratchDir } from "../helpers/scratch.js";
import { fileBackedUnitPaths } from "../helpers/unit-paths.js";

const password = "errors-http-secret";
const authorization = `Basic ${Buffer.from(`gokrazy:${password}`).toString("base64")}`;

interface Reply {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
}

/** The reply is `code` with the catalogue's status, as exactly application/json {code, message, hint}. */
function assertErrorReply(reply: Reply, code: ErrorCode, what: string): { message: string; hint: string } {
  assert.equal(reply.statusCode, errorCatalogue[code].status, `${what}: ${reply.body}`);
  assert.equal(reply.headers["content-type"], "application/json", what);
  const body = JSON.parse(reply.body) as Record<string, unknown>;
  assert.deepEqual(Object.keys(body).sort(), ["code", "hint", "message"], what);
  assert.equal(body.code, code, what);
  assert.ok(typeof body.message === "string" && body.message !== "", what);
  assert.ok(typeof body.hint === "string" && body.hint !== "", what);
  assert.ok(!reply.body.includes(password), `${what}: the password is in the reply`);
  return body as { message: string; hint: string };
}

async function updateApi(t: TestContext) {
  const dir = await scratchDir(t, "errors-http");
  const paths = await fileBackedUnitPaths(dir);
  // Slot b holds no squashfs: switch and testboot must refuse it.
  await writeFile(paths.roots.b, Buffer.alloc(8192));
  const boot = new FakeBootControl({ running: "a", trial: false, committed: "a" });
  const app = buildUpdateApi({ paths, boot, password, log: silentLogger() });
  t.after(() => app.close());
  return { app, boot };
}

test("asRtr7Error: catalogued errors kept, fastify's 4xx by status, anything else internal", () => {
  const busy = new Rtr7Error("RTR7_ERR_UPDATE_BUSY", "PUT /update/root: refused");
  assert.equal(asRtr7Error(busy, "PUT /update/root"), busy);
  const fastifyError = (statusCode: number): Error =>
    Object.assign(new Error("from fastify"), { statusCode });
  assert.equal(asRtr7Error(fastifyError(404), "GET /x").code, "RTR7_ERR_HTTP_NOT_FOUND");
  assert.equal(asRtr7Error(fastifyError(413), "POST /x").code, "RTR7_ERR_HTTP_TOO_LARGE");
  assert.equal(asRtr7Error(fastifyError(415), "POST /x").code, "RTR7_ERR_HTTP_REQUEST");
  assert.equal(
    asRtr7Error(fastifyError(400), "POST /x", { requestCode: "RTR7_ERR_UPDATE_REQUEST" }).code,
    "RTR7_ERR_UPDATE_REQUEST",
  );
  const internal = asRtr7Error(new TypeError("undefined is not a function"), "GET /");
  assert.equal(internal.code, "RTR7_ERR_INTERNAL");
  assert.equal(internal.httpStatus, 500);
  assert.equal(internal.message, "GET /: undefined is not a function");
  assert.equal(asRtr7Error(fastifyError(503), "GET /").code, "RTR7_ERR_INTERNAL");
});

test("parseErrorBody reads rtr7's error body back, and nothing else", () => {
  const error = new Rtr7Error("RTR7_ERR_SLOT_INVALID", "slot b is not bootable");
  const text = JSON.stringify(errorBody(error));
  assert.deepEqual(parseErrorBody("application/json", text), {
    code: "RTR7_ERR_SLOT_INVALID",
    message: "slot b is not bootable",
    hint: errorCatalogue.RTR7_ERR_SLOT_INVALID.hint,
  });
  assert.equal(parseErrorBody("application/json; charset=utf-8", text)?.code, "RTR7_ERR_SLOT_INVALID");
  assert.equal(parseErrorBody("text/plain", text), undefined, "a gokrazy unit's text");
  assert.equal(parseErrorBody(undefined, text), undefined);
  assert.equal(parseErrorBody("application/json", "{not json"), undefined);
  assert.equal(
    parseErrorBody("application/json", JSON.stringify({ code: "FST_ERR_X", message: "m", hint: "h" })),
    undefined,
    "a code that is not catalogued",
  );
  assert.equal(
    parseErrorBody("application/json", JSON.stringify({ error: "RTR7_ERR_UPDATE_BUSY" })),
    undefined,
  );
});

test("the update API's JSON replies carry exactly Content-Type application/json, as gokrazy's updater wants", async (t) => {
  const { app } = await updateApi(t);
  const accept = { authorization, accept: "application/json" };
  const features = await app.inject({ url: "/update/features", headers: accept });
  assert.equal(features.statusCode, 200);
  assert.equal(features.headers["content-type"], "application/json");
  assert.deepEqual(features.json(), { features: "partuuid,updatehash,gzip,signed,", EEPROM: null });
  const status = await app.inject({ url: "/", headers: accept });
  assert.equal(status.statusCode, 200);
  assert.equal(status.headers["content-type"], "application/json");
  assert.equal(status.json<{ running: { slot: string } }>().running.slot, "a");
  // Without Accept: application/json, the features stay gokrazy's text.
  const text = await app.inject({ url: "/update/features", headers: { authorization } });
  assert.equal(text.body, "partuuid,updatehash,gzip,signed,");
  assert.match(String(text.headers["content-type"]), /^text\/plain/);
});

test("the update API answers every error in rtr7's shape with the catalogue's status", async (t) => {
  const { app, boot } = await updateApi(t);
  for (const headers of [{}, { authorization: `Basic ${Buffer.from("gokrazy:wrong").toString("base64")}` }]) {
    const refused = await app.inject({ method: "PUT", url: "/update/root", headers, payload: "x" });
    assertErrorReply(refused, "RTR7_ERR_UPDATE_AUTH", "no or wrong credentials");
    assert.equal(refused.headers["www-authenticate"], 'Basic realm="gokrazy"');
  }
  const wrongMethod = await app.inject({ method: "GET", url: "/update/root", headers: { authorization } });
  assertErrorReply(wrongMethod, "RTR7_ERR_UPDATE_REQUEST", "GET /update/root");
  assert.equal(wrongMethod.headers.allow, "PUT");
  const missing = await app.inject({ url: "/update/nothing", headers: { authorization } });
  const notFound = assertErrorReply(missing, "RTR7_ERR_HTTP_NOT_FOUND", "an unknown path");
  assert.match(notFound.hint, /\/update\/features/);
  const invalid = await app.inject({ method: "POST", url: "/update/switch", headers: { authorization } });
  assertErrorReply(invalid, "RTR7_ERR_SLOT_INVALID", "switch to a slot without a squashfs");
  const badForm = await app.inject({
    method: "POST",
    url: "/reboot",
    headers: { authorization, "content-type": "application/x-www-form-urlencoded" },
    payload: "kexec=maybe",
  });
  assertErrorReply(badForm, "RTR7_ERR_UPDATE_REQUEST", "a malformed reboot form");
  assert.deepEqual(boot.calls, []);
});
