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

test("a hostile duration is refused without being echoed back in full", () => {
  for (const hostile of ["9".repeat(4000), "1s".repeat(8000), "1".repeat(16_384) + "x"]) {
    assert.throws(
      () => parseDuration(hostile, "deadline"),
      (error) => {
        assert.ok(isRtr7Error(error, "RTR7_ERR_USAGE"));
        assert.ok(error.message.length < 200, `the message quotes ${error.message.length} characters`);
        assert.match(error.message, new RegExp(`\\(${hostile.length} characters\\)`));
        return true;
      },
    );
  }
});

test("every unit may appear in any order, as a person writes it", () => {
  assert.equal(parseDuration("1h30m15s500ms", "--timeout"), 5_415_500);
  assert.equal(parseDuration("1.5s", "--timeout"), 1500);
  assert.equal(parseDuration(" 2m ", "--timeout"), 120_000);
});
