// Slow clients against the update lock (issue 11, item 2): an upload that
// trickles a byte at a time is cut off by its minimum rate (and so is one
// past its deadline), its slot is left invalid and the next update gets
// through; a boot action's form is read before the lock is taken, so a
// client that never sends its form holds nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import net from "node:net";
import { head, missingImageTool, sha256, unitWithNextImage, type TestUnit } from "./update-api-fixture.js";

const skip = missingImageTool() ?? false;

/** A raw connection with the unit's credentials in the request head. */
async function rawRequest(unit: TestUnit, head: string): Promise<net.Socket> {
  const socket = net.connect(unit.port, "127.0.0.1");
  socket.on("error", () => undefined);
  await once(socket, "connect");
  const credentials = Buffer.from(`gokrazy:${unit.password}`).toString("base64");
  socket.write(head.replace("\r\n", `\r\nHost: 127.0.0.1\r\nAuthorization: Basic ${credentials}\r\n`));
  return socket;
}

test(
  "a trickling upload is cut off, its slot left invalid, and the next update gets through; a slow form holds no lock",
  { skip, timeout: 120_000 },
  async (t) => {
    // Small limits, so the test takes seconds: idle 3 s, 1 KiB/s after 5 s, 20 s in all.
    const { unit, next } = await unitWithNextImage(t, "pace", {
      uploadIdleTimeoutMs: 3000,
      uploadPace: { minBytesPerSecond: 1024, graceMs: 5000, deadlineMs: 20_000 },
    });

    // A byte every 500 ms: never idle for 3 s, but far below 1 KiB/s.
    const slow = await rawRequest(unit, "PUT /update/root HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    const trickle = setInterval(() => slow.write("1\r\nx\r\n"), 500);
    t.after(() => clearInterval(trickle));
    const cut = once(slow, "close");
    // While it trickles, the lock is held: another update is told to wait.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const busy = await unit.curl([...unit.auth, "-X", "POST", `${unit.baseUrl}/update/commit`]);
    assert.equal(busy.status, 409, busy.body);
    await cut;
    clearInterval(trickle);
    const stalled = await unit.waitForEvent((event) => event.kind === "upload" && !event.ok);
    assert.match(stalled.message ?? "", /bytes\/s on average/);
    const state = await unit.slotState("b");
    assert.equal(state?.state, "invalid", JSON.stringify(state));

    // A form that never comes: the lock stays free for the real update meanwhile.
    const form = await rawRequest(
      unit,
      "POST /update/testboot HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n",
    );
    t.after(() => form.destroy());

    const image = await readFile(next);
    const put = await unit.curl([...unit.auth, "-T", next, `${unit.baseUrl}/update/root`]);
    assert.equal(put.status, 200, put.body);
    assert.equal(put.body, sha256(image));
    assert.equal(sha256(await head(unit.paths.roots.b, image.length)), sha256(image));
    assert.equal((await unit.slotState("b"))?.state, "complete");
  },
);
