// Bad input at the update API: 10,000 malformed requests (random methods,
// paths, headers and bodies; truncated, lying and oversized framing), none
// with the password. Afterwards no slot, boot partition or MBR byte has
// changed, the API still answers, and a real update still succeeds.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import net from "node:net";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { head, makeSquashfs, MiB, sha256, sha256File, startUnit } from "./update-api-fixture.js";
import { fuzzHttp } from "./http-fuzz.js";

const missing = ["mksquashfs", "mcopy", "curl"].find(
  (tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0,
);

test(
  "10,000 malformed requests change no byte of any slot, and a real update succeeds afterwards",
  { skip: missing === undefined ? false : `needs ${missing}: run scripts/setup.sh`, timeout: 300_000 },
  async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), "rtr7-update-fuzz-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const running = await makeSquashfs(dir, "running", MiB);
    const next = await makeSquashfs(dir, "next", MiB);
    const unit = await startUnit(t, { running: "a", trial: false, committed: "a" }, running);
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
  { skip: missing === undefined ? false : `needs ${missing}: run scripts/setup.sh`, timeout: 120_000 },
  async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), "rtr7-update-idle-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const running = await makeSquashfs(dir, "running", MiB);
    const next = await makeSquashfs(dir, "next", MiB);
    const unit = await startUnit(t, { running: "a", trial: false, committed: "a" }, running);
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
