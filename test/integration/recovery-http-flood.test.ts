// Slow readers against the recovery server (issue 11, item 7): sockets that
// ask for root.img and never read, from 100 addresses. The server, in its
// own process, must stay within a memory bound read from /proc/PID/status,
// turn away what is over its caps at once (503), serve the unit (the address
// its DHCP hands out) in full all the same, and end the stalled downloads
// once they have been idle for the idle time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { open } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { scratchDir } from "../helpers/scratch.js";

const imageMiB = 64;
const stalledSockets = 100;
const idleMs = 4000;
const unitAddress = "127.0.0.2";

/** Resident memory of a process in MiB, from /proc/PID/status (VmRSS). */
function residentMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
  return kib / 1024;
}

const haveCurl = spawnSync("curl", ["--version"]).status === 0;

test(
  "100 stalled readers of root.img: memory stays bounded, a real client gets the whole image, the stalled ones are cut off",
  { skip: haveCurl ? false : "needs curl: run scripts/setup.sh", timeout: 120_000 },
  async (t) => {
    const dir = await scratchDir(t, "http-flood");
    const image = path.join(dir, "root.img");
    const block = Buffer.alloc(1024 * 1024);
    const handle = await open(image, "w");
    for (let index = 0; index < imageMiB; index += 1) {
      block.fill(index);
      await handle.write(block);
    }
    await handle.close();
    const expected = createHash("sha256").update(readFileSync(image)).digest("hex");

    const driver = path.join(path.dirname(fileURLToPath(import.meta.url)), "recovery-http-server.js");
    const server = spawn(process.execPath, [driver, image, String(idleMs), unitAddress], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    t.after(() => server.kill("SIGTERM"));
    const [line] = (await once(createInterface({ input: server.stdout }), "line")) as [string];
    const { port, pid } = JSON.parse(line) as { port: number; pid: number };
    const before = residentMiB(pid);

    // Each stalled socket asks for the image and never reads a byte: a tiny
    // receive buffer, and the socket paused so Node reads nothing either.
    const stalled: net.Socket[] = [];
    for (let index = 0; index < stalledSockets; index += 1) {
      const socket = net.connect({ host: "127.0.0.1", port, localAddress: `127.0.1.${index + 1}` });
      socket.on("error", () => undefined);
      await once(socket, "connect");
      socket.pause();
      socket.write(`GET /root.img HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      stalled.push(socket);
    }
    t.after(() => stalled.forEach((socket) => socket.destroy()));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const flooded = residentMiB(pid);
    t.diagnostic(
      `server memory: ${before.toFixed(0)} MiB before, ${flooded.toFixed(0)} MiB with ${stalledSockets} stalled readers`,
    );
    // 8 downloads at most, each a ring of 4 x 1 MiB: 32 MiB, plus Node's own churn.
    assert.ok(flooded - before < 64, `memory grew by ${(flooded - before).toFixed(0)} MiB`);

    // The unit is served in full despite the flood.
    const saved = path.join(dir, "fetched.img");
    const curl = spawnSync(
      "curl",
      ["-sS", "--fail", "--interface", unitAddress, "-o", saved, `http://127.0.0.1:${port}/root.img`],
      { encoding: "utf8", timeout: 60_000 },
    );
    assert.equal(curl.status, 0, curl.stderr);
    assert.equal(createHash("sha256").update(readFileSync(saved)).digest("hex"), expected);

    // Once idle for longer than idleMs, every stalled download has been
    // ended by the server: reading now, each socket gets either a 503 (over
    // the caps) or the start of the image and then its end, never all of it.
    await new Promise((resolve) => setTimeout(resolve, idleMs + 2000));
    const outcomes = await Promise.all(
      stalled.map(async (socket) => {
        let head = "";
        let bytes = 0;
        socket.on("data", (chunk: Buffer) => {
          if (head.length < 64) head += chunk.subarray(0, 64).toString("latin1");
          bytes += chunk.length;
        });
        socket.resume();
        if (!socket.closed) await once(socket, "close");
        return { status: head.slice(9, 12), bytes };
      }),
    );
    const served = outcomes.filter((outcome) => outcome.status === "200");
    const refused = outcomes.filter((outcome) => outcome.status === "503");
    t.diagnostic(
      `${served.length} stalled downloads admitted and cut off, ${refused.length} refused with 503`,
    );
    assert.equal(served.length + refused.length, stalledSockets);
    assert.ok(served.length >= 1 && served.length <= 8, `${served.length} downloads ran at once`);
    for (const outcome of served)
      assert.ok(outcome.bytes < imageMiB * 1024 * 1024, "a stalled download was not cut off");
  },
);
