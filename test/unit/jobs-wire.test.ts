// lib/wire/jobs.ts: the remote fleet's topics, who may use them, and the
// payloads parsed as hostile input (each refusal names the field).
import { test } from "node:test";
import assert from "node:assert/strict";
import { isRtr7Error } from "../../lib/errors.js";
import {
  parseJobDocument,
  parseJobUpdate,
  parseUnitState,
  topicHostname,
  unitMayPublish,
  unitMaySubscribe,
  unitTopics,
} from "../../lib/wire/jobs.js";

const job = {
  jobId: "r1-shop-7",
  operation: "update",
  rolloutId: "r1",
  release: { version: "v2", baseUrl: "https://10.93.0.1:8443/releases/v2" },
  soakMs: 1000,
  healthTimeoutMs: 20_000,
  timeoutMs: 600_000,
  allowDowngrade: false,
  createdAt: "2026-12-04T10:00:00.000Z",
};

test("a unit may publish only its own status, state and job updates, and subscribe only to its own jobs", () => {
  const topics = unitTopics("shop-7");
  assert.ok(unitMayPublish("shop-7", topics.status));
  assert.ok(unitMayPublish("shop-7", topics.state));
  assert.ok(unitMayPublish("shop-7", topics.jobUpdate("r1-shop-7")));
  assert.ok(!unitMayPublish("shop-7", unitTopics("shop-8").state), "another unit's state");
  assert.ok(!unitMayPublish("shop-7", topics.jobNext), "its own job document");
  assert.ok(!unitMayPublish("shop-7", "rtr7/units/shop-7/jobs/+/update"));
  assert.ok(!unitMayPublish("shop-7", "rtr7/units/shop-7/state/extra"));
  assert.ok(unitMaySubscribe("shop-7", topics.jobNext));
  assert.ok(!unitMaySubscribe("shop-7", "rtr7/units/+/jobs/next"));
  assert.ok(!unitMaySubscribe("shop-7", "rtr7/#"));
  assert.equal(topicHostname(topics.state), "shop-7");
  assert.throws(
    () => unitTopics("shop/+"),
    (error) => isRtr7Error(error),
  );
});

test("a job document parses; each malformed field is refused by name", () => {
  const parsed = parseJobDocument(JSON.stringify(job));
  assert.equal(parsed.release.baseUrl, "https://10.93.0.1:8443/releases/v2/");
  const refused = (change: Record<string, unknown>, field: RegExp) =>
    assert.throws(
      () => parseJobDocument(JSON.stringify({ ...job, ...change })),
      (error) => isRtr7Error(error, "RTR7_ERR_JOB") && field.test(error.message),
    );
  refused({ operation: "reboot" }, /operation/);
  refused({ jobId: "../x" }, /job id/);
  refused({ release: { version: "v2", baseUrl: "http://plain/" } }, /https/);
  refused({ release: { version: "v 2", baseUrl: "https://x/" } }, /version/);
  refused({ soakMs: -1 }, /soakMs/);
  refused({ allowDowngrade: "yes" }, /allowDowngrade/);
  assert.throws(() => parseJobDocument("{not json"), /not JSON/);
  assert.throws(() => parseJobDocument("[]"), /an array/);
  assert.throws(() => parseJobDocument("x".repeat(70_000)), /more than/);
});

test("job updates and unit states parse; a unit cannot claim a server-side state", () => {
  assert.equal(
    parseJobUpdate(JSON.stringify({ jobId: "j1", state: "IN_PROGRESS", step: "download" })).step,
    "download",
  );
  assert.throws(() => parseJobUpdate(JSON.stringify({ jobId: "j1", state: "TIMED_OUT" })), /state/);
  assert.throws(
    () =>
      parseJobUpdate(
        JSON.stringify({
          jobId: "j1",
          state: "IN_PROGRESS",
          progress: { image: "root.img", bytesDone: -1, bytesTotal: 1 },
        }),
      ),
    /progress/,
  );
  const state = {
    hostname: "shop-7",
    version: "v1",
    slot: "a",
    trial: false,
    health: "",
    uptimeSeconds: 5,
    at: "now",
  };
  assert.equal(parseUnitState(JSON.stringify(state)).hostname, "shop-7");
  assert.throws(() => parseUnitState(JSON.stringify({ ...state, slot: "c" })), /want/);
});
