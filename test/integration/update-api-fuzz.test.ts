// Bad input at the update API: 10,000 malformed requests (random methods,
// paths, headers and bodies; truncated, lying and oversized framing), none
// with the password. Afterwards no slot, boot partition or MBR byte has
// changed, the API still answers, and a real update still succeeds.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { readFile } from "node:fs/promises";
import { head, missingImageTool, sha256, sha256File, unitWithNextImage } from "./update-api-fixture.js";
import { fuzzHttp } from "./http-fuzz.js";

const skip = missingImageTool() ?? false;

test(
  "10,000 malformed requests change no byte of any slot, and a real update succeeds afterwards",
  { skip, timeout: 300_000 },
  async (t) => {
    const { unit, next } = await unitWithNextImage(t, "fuzz");
    const files = [unit.paths.roots.a, unit.paths.roots.b, unit.paths.boot, unit.paths.mbr];
    const before = await Promise.all(files.map(sha256File));

    const { answered, statuses } = await fuzzHttp(unit.port, "127.0.0.1", 10_000, 11);
    t.diagnostic(`answered ${answered}; statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    assert.ok(answered > 5000, `only ${answered} of 10,000 requests got an answer`);
    assert.equal(statuses.get("200") ?? 0, 0, "a request without the password succeeded");
    assert.deepEqual(
      await Promise.all(files.map(sha256File)),
      before,
      "a slot, the boot partition or the MBR changed",
    );
    // The fuzzer's address has guessed passwords and is refused for a while
    // (429); the admin's workstation, elsewhere, is served at once.
    const admin = ["--interface", "127.0.0.2"];
    const features = await unit.curl([...admin, ...unit.auth, `${unit.baseUrl}/update/features`]);
    assert.equal(features.status, 200, features.body);
    const image = await readFile(next);
    const put = await unit.curl([...admin, ...unit.auth, "-T", next, `${unit.baseUrl}/update/root`]);
    assert.equal(put.status, 200, put.body);
    assert.equal(put.body, sha256(image));
    assert.equal(sha256(await head(unit.paths.roots.b, image.length)), sha256(image));
  },
);

test(
  "300 idle sockets from one host do not stop a real update from another",
  { skip, timeout: 120_000 },
  async (t) => {
    const { unit, next } = await unitWithNextImage(t, "idle");
    const idle: net.Socket[] = [];
    for (let index = 0; index < 300; index += 1) {
      const socket = net.connect({ port: unit.port, host: "127.0.0.1", localAddress: "127.0.0.1" });
      socket.on("error", () => undefined);
      idle.push(socket);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const held = idle.filter((socket) => !socket.destroyed && !socket.closed).length;
    t.diagnostic(`${held} of 300 idle sockets still open`);
    assert.ok(held <= 16, `${held} idle sockets from one host are held (at most 16)`);

    const image = await readFile(next);
    const put = await unit.curl([
      "--interface",
      "127.0.0.2",
      ...unit.auth,
      "-T",
      next,
      `${unit.baseUrl}/update/root`,
    ]);
    assert.equal(put.status, 200, put.body);
    assert.equal(put.body, sha256(image));
    idle.forEach((socket) => socket.destroy());
  },
);
