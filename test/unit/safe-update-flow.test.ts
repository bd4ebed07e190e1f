// safeUpdate() against a scripted unit on loopback, for the two ends of the
// flow that a real unit does not show on demand: a unit that is unhealthy
// (or on trial) before the update is left untouched — no run directory, no
// request but the health probe; and a unit that goes silent after the
// reboot and stays silent past its own fallback is recovered with
// `rtr7 recover`, given the last known-good run's images and the backup
// just taken. The CLI entry is a stand-in that records its argv and lets
// the scripted unit come back, as a real recovery would.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { access, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { isRtr7Error } from "../../lib/errors.js";
import { silentLogger } from "../../lib/log.js";
import { haveTool, run } from "../../lab/processes.js";
import { safeUpdate, type SafeUpdateOptions } from "../../updates/safe-update.js";
import { scratchDir } from "../helpers/scratch.js";

interface UnitScript {
  /** The report to answer, given the routes seen so far; "silent" drops the connection. */
  health: (seen: string[]) => Record<string, unknown> | "silent";
  backup: Buffer;
}

/** One server for the update API, diagd and backupd; records every request. */
async function scriptedUnit(t: TestContext, script: UnitScript): Promise<{ port: number; seen: string[] }> {
  const seen: string[] = [];
  const server = http.createServer((request: IncomingMessage, response: ServerResponse) => {
    const route = `${request.method ?? ""} ${request.url ?? ""}`;
    seen.push(route);
    if (route === "GET /health.json") {
      const report = script.health(seen);
      if (report === "silent") return request.socket.destroy();
      response.setHeader("content-type", "application/json");
      return response.end(JSON.stringify(report));
    }
    if (route === "GET /backup.tar.gz") return response.end(script.backup);
    if (route === "GET /update/features") return response.end("partuuid,");
    if (request.method === "PUT") {
      const hash = createHash("sha256");
      request.on("data", (chunk: Buffer) => hash.update(chunk));
      request.on("end", () => response.end(hash.digest("hex")));
      return;
    }
    request.resume();
    request.on("end", () => response.end("ok"));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as AddressInfo).port, seen };
}

const report = (version: string, slot: "a" | "b", extra: Record<string, unknown> = {}) => ({
  first_error: "",
  hostname: "fake1",
  version,
  slot,
  trial: false,
  uptime_seconds: 100,
  checks: [],
  ...extra,
});

/** A directory with mbr.img, boot.img and a squashfs root.img reporting `version`. */
async function imagesOf(dir: string, version: string): Promise<string> {
  const tree = path.join(dir, "tree");
  await mkdir(path.join(tree, "etc", "rtr7"), { recursive: true });
  await writeFile(path.join(tree, "etc", "rtr7", "build.json"), JSON.stringify({ version }));
  await writeFile(path.join(dir, "mbr.img"), Buffer.alloc(440, 1));
  await writeFile(path.join(dir, "boot.img"), Buffer.alloc(64 * 1024, 2));
  await run("mksquashfs", [tree, path.join(dir, "root.img"), "-noappend", "-quiet"]);
  return dir;
}

async function gzipTar(dir: string): Promise<Buffer> {
  const source = path.join(dir, "perm");
  await mkdir(source, { recursive: true });
  await writeFile(path.join(source, "keep.txt"), "keep\n");
  await run("tar", ["czf", path.join(dir, "backup.tar.gz"), "-C", source, "."]);
  return readFile(path.join(dir, "backup.tar.gz"));
}

function options(port: number, work: string, extra: Partial<SafeUpdateOptions>): SafeUpdateOptions {
  return {
    hostname: "fake1",
    endpoint: { host: "127.0.0.1", port, diagdPort: port, backupdPort: port },
    password: "s3cret",
    updatesDir: path.join(work, "updates"),
    keepOnly: 5,
    healthTimeoutMs: 1500,
    kexec: true,
    trialDeadlineMs: 1000,
    cli: { node: process.execPath, entry: path.join(work, "no-cli.js") },
    log: silentLogger(),
    timings: { probeTimeoutMs: 300, downTimeoutMs: 1500, pollMs: 50 },
    ...extra,
  };
}

const skip =
  (await haveTool("mksquashfs")) && (await haveTool("unsquashfs")) ? false : "needs squashfs-tools";

test("an unhealthy unit, or one on trial, is left untouched: no run directory, only the health probe", async (t) => {
  const work = await scratchDir(t, "safe-update-flow");
  let answer: Record<string, unknown> | "silent" = report("v1", "a", {
    first_error: "tcp 192.0.2.1:80: refused",
  });
  const unit = await scriptedUnit(t, { health: () => answer, backup: Buffer.alloc(0) });
  const build = `touch "${path.join(work, "built")}"`;
  for (const [state, pattern] of [
    [answer, /is not healthy \(tcp 192\.0\.2\.1:80: refused\); nothing was changed/],
    [report("v2", "b", { trial: true }), /runs slot b \(v2\) on trial, not committed; nothing was changed/],
    ["silent", /does not answer \/health\.json; nothing was changed/],
  ] as const) {
    answer = state;
    unit.seen.length = 0;
    await assert.rejects(
      safeUpdate(options(unit.port, work, { buildCommand: build })),
      (error: unknown) => isRtr7Error(error, "RTR7_ERR_UNIT_UNHEALTHY") && pattern.test(error.message),
    );
    assert.deepEqual(unit.seen, ["GET /health.json"]);
  }
  await assert.rejects(access(path.join(work, "updates")), "no run directory");
  await assert.rejects(access(path.join(work, "built")), "nothing built");
});

test(
  "silent after the reboot and past its fallback: recovered with the last good run's images and this backup",
  { skip },
  async (t) => {
    const work = await scratchDir(t, "safe-update-flow");
    const goodRun = path.join(work, "updates", "fake1", "2026-01-01T00-00-00Z");
    await mkdir(goodRun, { recursive: true });
    await imagesOf(goodRun, "v1");
    await writeFile(
      path.join(goodRun, "run.json"),
      JSON.stringify({
        hostname: "fake1",
        status: "committed",
        version: "v1",
        startedAt: "2026-01-01T00:00:00Z",
      }),
    );
    const newImages = await imagesOf(path.join(work, "v2"), "v2");

    // The stand-in CLI records what it was asked to do; the unit answers
    // again as v1 once it has run.
    const recovered = path.join(work, "recover-argv.json");
    const standIn = path.join(work, "stand-in-cli.js");
    await writeFile(
      standIn,
      `require("node:fs").writeFileSync(${JSON.stringify(recovered)}, JSON.stringify(process.argv.slice(2)));\n`,
    );
    await writeFile(path.join(work, "package.json"), '{"type": "commonjs"}');
    const unit = await scriptedUnit(t, {
      backup: await gzipTar(work),
      health: (seen) => {
        if (!seen.includes("POST /reboot")) return report("v1", "a");
        return existsSync(recovered) ? report("v1", "a", { uptime_seconds: 1 }) : "silent";
      },
    });

    await assert.rejects(
      safeUpdate(
        options(unit.port, work, {
          buildCommand: `cp "${newImages}"/*.img "$RTR7_OUT_DIR"/`,
          cli: { node: process.execPath, entry: standIn },
          recoverArgs: ["--interface=eth9"],
        }),
      ),
      (error: unknown) =>
        isRtr7Error(error, "RTR7_ERR_UPDATE_FAILED") &&
        /v2 was not healthy within 2 s; it never answered; rolled back: fake1 now runs v1 \(slot a\), recovered from /.test(
          error.message,
        ),
    );
    const runs = (await readdir(path.join(work, "updates", "fake1"))).sort();
    assert.equal(runs.length, 2);
    const thisRun = path.join(work, "updates", "fake1", runs[1] ?? "");
    assert.deepEqual(JSON.parse(await readFile(recovered, "utf8")), [
      "recover",
      "--hostname=fake1",
      `--image-dir=${goodRun}`,
      `--backup=${path.join(thisRun, "backup.tar.gz")}`,
      "--interface=eth9",
    ]);
    const events = (await readFile(path.join(thisRun, "events.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { event: string; how?: string });
    assert.deepEqual(
      events.filter((event) => event.event === "rollback").map((event) => event.how),
      ["recover"],
    );
    const record = JSON.parse(await readFile(path.join(thisRun, "run.json"), "utf8")) as { status: string };
    assert.equal(record.status, "failed");
  },
);
