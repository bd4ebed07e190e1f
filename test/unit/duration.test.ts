import { test } from "node:test";
import assert from "node:assert/strict";
import { parseDuration } from "../../lib/duration.js";
import { isRtr7Error } from "../../lib/errors.js";

test("durations as typed on a command line", () => {
  assert.equal(parseDuration("90", "--timeout"), 90_000);
  assert.equal(parseDuration("90s", "--timeout"), 90_000);
  assert.equal(parseDuration("10m", "--timeout"), 600_000);
  assert.equal(parseDuration("1h30m", "--timeout"), 5_400_000);
  assert.equal(parseDuration("250ms", "--timeout"), 250);
  for (const bad of ["", "ten minutes", "10x", "5m garbage", "-5s"]) {
    assert.throws(
      () => parseDuration(bad, "--timeout"),
      (error) => isRtr7Error(error, "RTR7_ERR_USAGE"),
      bad,
    );
  }
});
