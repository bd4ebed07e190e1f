// Every code in the error catalogue is documented in docs/errors.md with the
// HTTP status it is answered with, and the documentation names no code that
// does not exist; every entry's status is a real HTTP error status.
import { test } from "node:test";
import assert from "node:assert/strict";
import { STATUS_CODES } from "node:http";
import { readFileSync } from "node:fs";
import { errorCatalogue, Rtr7Error, isRtr7Error, type ErrorCode } from "../../lib/errors.js";
import { repoPath } from "../helpers/paths.js";

const codes = Object.keys(errorCatalogue) as ErrorCode[];

test("every error code is documented in docs/errors.md with its HTTP status, and only those", () => {
  const documentation = readFileSync(repoPath("docs/errors.md"), "utf8");
  const documented = [...documentation.matchAll(/^## (RTR7_ERR_[A-Z0-9_]+)$/gm)].map((match) => match[1]);
  assert.deepEqual([...documented].sort(), [...codes].sort());
  for (const code of codes) {
    const section = documentation.split(`## ${code}\n`)[1]?.split("\n## ")[0] ?? "";
    assert.ok(section.trim().length > 40 && !section.includes("TODO"), `${code} needs a real description`);
    const status = /^HTTP status (\d{3})\b/m.exec(section)?.[1];
    assert.equal(
      Number(status),
      errorCatalogue[code].status,
      `${code}: docs/errors.md says HTTP status ${status}`,
    );
  }
});

test("every catalogue entry has an HTTP error status (4xx or 5xx) and a hint", () => {
  for (const code of codes) {
    const { status, hint } = errorCatalogue[code];
    assert.ok(Number.isInteger(status) && status >= 400 && status <= 599, `${code}: status ${status}`);
    assert.ok(STATUS_CODES[status] !== undefined, `${code}: ${status} is not a known HTTP status`);
    assert.ok(hint.length > 10, `${code} needs a hint`);
  }
  // The statuses gokrazy's clients rely on.
  assert.equal(errorCatalogue.RTR7_ERR_UPDATE_AUTH.status, 401);
  assert.equal(errorCatalogue.RTR7_ERR_UPDATE_BUSY.status, 409);
  assert.equal(errorCatalogue.RTR7_ERR_UPDATE_REQUEST.status, 400);
  assert.equal(errorCatalogue.RTR7_ERR_INTERNAL.status, 500);
});

test("an Rtr7Error carries its code, the catalogue's hint and status, and its cause", () => {
  const cause = new Error("EADDRINUSE");
  const error = new Rtr7Error("RTR7_ERR_LISTEN", "listen on udp 0.0.0.0:67: address in use", { cause });
  assert.equal(error.code, "RTR7_ERR_LISTEN");
  assert.equal(error.hint, errorCatalogue.RTR7_ERR_LISTEN.hint);
  assert.equal(error.httpStatus, 500);
  assert.equal(error.cause, cause);
  assert.ok(isRtr7Error(error, "RTR7_ERR_LISTEN"));
  assert.ok(!isRtr7Error(error, "RTR7_ERR_USAGE"));
  const busy = new Rtr7Error("RTR7_ERR_UPDATE_BUSY", "PUT /update/root: refused", { hint: "wait" });
  assert.equal(busy.httpStatus, 409);
  assert.equal(busy.hint, "wait");
});
