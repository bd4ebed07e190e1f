// Every code in the error catalogue is documented in docs/errors.md, and the
// documentation names no code that does not exist.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { errorCatalogue, Rtr7Error, isRtr7Error } from "../../lib/errors.js";
import { repoPath } from "../helpers/paths.js";

test("every error code is documented in docs/errors.md, and only those", () => {
  const documentation = readFileSync(repoPath("docs/errors.md"), "utf8");
  const documented = [...documentation.matchAll(/^## (RTR7_ERR_[A-Z0-9_]+)$/gm)].map((match) => match[1]);
  const codes = Object.keys(errorCatalogue);
  assert.deepEqual([...documented].sort(), [...codes].sort());
  for (const code of codes) {
    const section = documentation.split(`## ${code}\n`)[1]?.split("\n## ")[0] ?? "";
    assert.ok(section.trim().length > 20 && !section.includes("TODO"), `${code} needs a real description`);
  }
});

test("an Rtr7Error carries its code, the catalogue's hint and its cause", () => {
  const cause = new Error("EADDRINUSE");
  const error = new Rtr7Error("RTR7_ERR_LISTEN", "listen on udp 0.0.0.0:67: address in use", { cause });
  assert.equal(error.code, "RTR7_ERR_LISTEN");
  assert.equal(error.hint, errorCatalogue.RTR7_ERR_LISTEN);
  assert.equal(error.cause, cause);
  assert.ok(isRtr7Error(error, "RTR7_ERR_LISTEN"));
  assert.ok(!isRtr7Error(error, "RTR7_ERR_USAGE"));
});
