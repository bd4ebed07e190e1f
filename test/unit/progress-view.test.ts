// The unit's byte progress as rtr7 recover shows it: a bar per image on a
// terminal, JSON lines with --json.
import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { progressView } from "../../cli/progress.js";
import { createLogger, silentLogger } from "../../lib/log.js";

test("on a terminal each image gets a bar that reaches 100%", async () => {
  const stream = new PassThrough();
  let drawn = "";
  stream.on("data", (chunk: Buffer) => (drawn += chunk.toString()));
  const view = await progressView({ json: false, log: silentLogger(), terminal: true, stream });
  const total = 8 * 2 ** 20;
  for (const done of [0, total / 4, total / 2, total]) {
    view.update({ step: "write", image: "root.img", bytesDone: done, bytesTotal: total });
  }
  view.stop();
  assert.match(drawn, /root\.img/);
  assert.match(drawn, /100% \| 8\.0\/8\.0 MiB/);
});

test("with --json each byte report is one JSON line", async () => {
  const lines: string[] = [];
  const log = createLogger({ json: true, stream: { write: (line) => lines.push(line) } });
  const view = await progressView({ json: true, log, terminal: false });
  view.update({ step: "write", image: "boot.img", bytesDone: 10, bytesTotal: 20 });
  view.update({ step: "perm", message: "mounting /perm" });
  assert.equal(lines.length, 1);
  const event = JSON.parse(lines[0] ?? "") as Record<string, unknown>;
  assert.deepEqual(
    [event.event, event.image, event.bytesDone, event.bytesTotal],
    ["progress", "boot.img", 10, 20],
  );
});
