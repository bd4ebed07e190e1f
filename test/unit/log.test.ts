// The human rendering of log events, and the JSON form scripts read.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createLogger, formatBytes, formatHumanLine } from "../../lib/log.js";

test("human lines: time, [subsystem], warning/error, peer, then the message; fields stay in the JSON", () => {
  assert.equal(
    formatHumanLine({
      time: "2026-11-21T12:13:58.123Z",
      level: "info",
      subsystem: "tftp",
      peer: "10.77.0.1:38893",
      msg: "sent pxelinux.0 (41.4 KiB, blksize 1432)",
      file: "pxelinux.0",
      bytes: 42430,
    }),
    "12:13:58 [tftp] 10.77.0.1:38893 sent pxelinux.0 (41.4 KiB, blksize 1432)",
  );
  assert.equal(
    formatHumanLine({
      time: "2026-11-21T12:00:00.000Z",
      level: "warn",
      subsystem: "dhcp",
      msg: "skipped",
      err: { message: "bad cookie" },
    }),
    "12:00:00 [dhcp] warning: skipped (bad cookie)",
  );
});

test("--json gives one parseable event per line with subsystem and peer", () => {
  const lines: string[] = [];
  const log = createLogger({ json: true, stream: { write: (line) => lines.push(line) } });
  log.child({ subsystem: "http" }).info({ peer: "10.0.0.1", event: "http-sent", bytes: 3 }, "sent x");
  const event = JSON.parse(lines[0] ?? "") as Record<string, unknown>;
  assert.deepEqual(
    {
      subsystem: event.subsystem,
      peer: event.peer,
      event: event.event,
      bytes: event.bytes,
      msg: event.msg,
      level: event.level,
    },
    { subsystem: "http", peer: "10.0.0.1", event: "http-sent", bytes: 3, msg: "sent x", level: "info" },
  );
});

test("byte counts for people", () => {
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(42430), "41.4 KiB");
  assert.equal(formatBytes(8247232), "7.9 MiB");
  assert.equal(formatBytes(3 * 1024 ** 3), "3.00 GiB");
});
