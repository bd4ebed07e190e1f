// The wire parsers throw catalogued errors, so a caller can tell a bad
// manifest, health report or kernel command line apart by code: the
// manifest (RTR7_ERR_MANIFEST), diagd's health report
// (RTR7_ERR_HEALTH_REPORT) and recovery-init's kernel command line
// (RTR7_ERR_CMDLINE). Each also accepts what the other side writes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { isRtr7Error, type ErrorCode } from "../../lib/errors.js";
import { parseHealthReport } from "../../lib/wire/health.js";
import { parseManifest } from "../../lib/wire/manifest.js";
import { parseCmdline } from "../../recovery-init/cmdline.js";

function assertThrowsCode(action: () => unknown, code: ErrorCode, what: string): void {
  assert.throws(action, (error: unknown) => isRtr7Error(error, code), what);
}

const sha256 = "ab".repeat(32);

test("parseManifest: a manifest as the image builder writes it, RTR7_ERR_MANIFEST for anything else", () => {
  const manifest = { hostname: "r7", images: [{ name: "root.img", size: 4096, sha256 }] };
  assert.deepEqual(parseManifest(manifest), manifest);
  for (const [what, value] of [
    ["null", null],
    ["a string", "images"],
    ["no images", { hostname: "r7" }],
    ["images not an array", { images: {} }],
    ["an entry without a name", { images: [{ size: 1, sha256 }] }],
    ["a negative size", { images: [{ name: "root.img", size: -1, sha256 }] }],
    ["a fractional size", { images: [{ name: "root.img", size: 1.5, sha256 }] }],
    ["an uppercase hash", { images: [{ name: "root.img", size: 1, sha256: sha256.toUpperCase() }] }],
    ["a short hash", { images: [{ name: "root.img", size: 1, sha256: "ab" }] }],
    ["a null entry", { images: [null] }],
  ] as const) {
    assertThrowsCode(() => parseManifest(value), "RTR7_ERR_MANIFEST", what);
  }
});

test("parseHealthReport: diagd's report (and router7's bare one), RTR7_ERR_HEALTH_REPORT for anything else", () => {
  assert.equal(parseHealthReport({ first_error: "" }).first_error, "");
  assert.equal(parseHealthReport({ first_error: "link lan0: down", slot: "b" }).slot, "b");
  for (const [what, value] of [
    ["null", null],
    ["a number", 7],
    ["an array", [{ first_error: "" }]],
    ["no first_error", { hostname: "r7" }],
    ["a first_error that is no string", { first_error: null }],
  ] as const) {
    assertThrowsCode(() => parseHealthReport(value), "RTR7_ERR_HEALTH_REPORT", what);
  }
});

test("parseCmdline: RTR7_ERR_CMDLINE for a missing key or a port that is no port", () => {
  const good = "rtr7.server=10.0.0.1 rtr7.hostname=r7 rtr7.token=t";
  assert.equal(parseCmdline(good).port, 7773);
  assert.equal(parseCmdline(`${good} rtr7.port=8080`).port, 8080);
  for (const [what, line] of [
    ["empty", ""],
    ["no server", "rtr7.hostname=r7 rtr7.token=t"],
    ["an empty hostname", "rtr7.server=10.0.0.1 rtr7.hostname= rtr7.token=t"],
    ["no token", "rtr7.server=10.0.0.1 rtr7.hostname=r7"],
    ["port 0", `${good} rtr7.port=0`],
    ["port 65536", `${good} rtr7.port=65536`],
    ["an empty port", `${good} rtr7.port=`],
    ["a hex port", `${good} rtr7.port=0x50`],
  ] as const) {
    assertThrowsCode(() => parseCmdline(line), "RTR7_ERR_CMDLINE", what);
  }
});
