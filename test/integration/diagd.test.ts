// diagd as the supervisor runs it (`main.js service diagd`, a process inside
// the "unit" namespace, so that /sys/class/net and /proc/net/route are the
// namespace's), against a "gateway" namespace across a veth pair that answers
// ping and holds a TCP listener. Every request is made with curl from inside
// the unit's namespace. Covers the verdict in each situation /health.json
// must tell apart, the HTML tree, the metrics (promtool's lint, the
// supervisor's counters) and the interface counters while traffic flows.
// Needs root, curl, socat, promtool and /bin/busybox (ping).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type { HealthReport } from "../../lib/wire/health.js";
import { writeSupervisorState } from "../../router/supervisor/state.js";
import type { ServiceConfig } from "../../router/unit.js";
import { joinWithVeth, namespacesFor, requireRootAndTools, type Netns } from "../helpers/netns.js";
import { repoPath } from "../helpers/paths.js";
import { scratchDir } from "../helpers/scratch.js";

const unitAddress = "10.81.0.2";
const gatewayAddress = "10.81.0.1";
const openPort = 8000;
const closedPort = 8001;
const trafficPort = 9000;
/** In the unit's subnet, but no host answers ARP for it: a connect never completes. */
const unreachableAddress = "10.81.0.99";
const base = `http://${unitAddress}:7733`;

async function curl(ns: Netns, url: string): Promise<string> {
  return (await ns.exec("curl", ["-sS", "--max-time", "10", url])).stdout;
}

async function health(ns: Netns): Promise<HealthReport> {
  return JSON.parse(await curl(ns, `${base}/health.json`)) as HealthReport;
}

/** One counter sample of the scrape, by metric name and label text. */
function sample(metrics: string, name: string, labels = ""): number | undefined {
  const escaped = `${name}${labels}`.replace(/[{}"]/g, (character) => `\\${character}`);
  const match = new RegExp(`^${escaped} (\\S+)$`, "m").exec(metrics);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

test("diagd: health verdicts, page and metrics of a unit in a namespace", { timeout: 300_000 }, async (t) => {
  if (!(await requireRootAndTools(t, ["ip", "curl", "socat", "promtool", "/bin/busybox"]))) return;
  const work = await scratchDir(t, "diagd");
  const config: ServiceConfig = {
    mode: "process",
    hostname: "unit-diagd-test",
    version: "2026.11.21-test",
    model: "process",
    slot: "a",
    trial: true,
    address: unitAddress,
    ports: { update: 8080, diagd: 7733, backupd: 8077 },
    paths: {
      boot: path.join(work, "boot.img"),
      roots: { a: path.join(work, "root-a.img"), b: path.join(work, "root-b.img") },
      mbr: path.join(work, "disk-mbr.img"),
      perm: path.join(work, "perm"),
      etc: path.join(work, "etc"),
      run: path.join(work, "run"),
    },
    bootedAtMs: Date.now(),
  };
  for (const dir of [config.paths.perm, config.paths.etc, config.paths.run])
    await mkdir(dir, { recursive: true });
  const etcTargets = path.join(config.paths.etc, "diagd.json");
  const permTargets = path.join(config.paths.perm, "diagd.json");
  await writeFile(etcTargets, JSON.stringify({ tcp: [`${gatewayAddress}:${openPort}`] }));

  const [unit, gateway] = await namespacesFor(t, "diagdunit", "diagdgw");
  if (!unit || !gateway) throw new Error("no namespaces");
  await joinWithVeth(unit, { device: "lan0", cidr: `${unitAddress}/24` }, gateway, {
    device: "eth0",
    cidr: `${gatewayAddress}/24`,
  });
  await unit.exec("ip", ["route", "add", "default", "via", gatewayAddress]);
  gateway.start("socat", [`TCP-LISTEN:${openPort},fork,reuseaddr`, "/dev/null"]);

  const diagd = unit.start(process.execPath, [repoPath("dist/router/main.js"), "service", "diagd"], {
    env: { ...process.env, RTR7_SERVICE_CONFIG: JSON.stringify(config) },
  });
  await diagd.waitForLine(/diagd listening/, 15_000);
  // socat may still be starting; the first verdict is retried a few times.
  let report = await health(unit);
  for (let attempt = 0; attempt < 20 && report.first_error !== ""; attempt++) {
    await delay(250);
    report = await health(unit);
  }

  await t.test("healthy: link, address, gateway and the /etc target pass", () => {
    assert.equal(report.first_error, "", JSON.stringify(report));
    assert.deepEqual(
      report.checks.map((check) => [check.name, check.status]),
      [
        ["link lan0", "ok"],
        ["address lan0", "ok"],
        [`gateway ${gatewayAddress}`, "ok"],
        [`tcp ${gatewayAddress}:${openPort}`, "ok"],
      ],
    );
    assert.equal(report.checks[1]?.detail, `${unitAddress}/24`);
    assert.equal(report.hostname, config.hostname);
    assert.equal(report.version, config.version);
    assert.equal(report.slot, "a");
    assert.equal(report.trial, true);
  });

  await t.test("/perm/diagd.json overrides /etc; a closed port is the first error", async () => {
    await writeFile(permTargets, JSON.stringify({ tcp: [`${gatewayAddress}:${closedPort}`] }));
    const closed = await health(unit);
    assert.equal(closed.first_error, `tcp ${gatewayAddress}:${closedPort}: no connection (ECONNREFUSED)`);
    assert.ok(
      !closed.checks.some((check) => check.name.includes(`:${openPort}`)),
      "the /etc target was checked",
    );
  });

  await t.test("a malformed diagd.json is a failed check naming the file; diagd keeps serving", async () => {
    await writeFile(permTargets, '{"tcp": ["10.81.0.1:80",');
    const malformed = await health(unit);
    assert.match(malformed.first_error, new RegExp(`^config ${permTargets}: not valid JSON \\(`));
    await writeFile(permTargets, JSON.stringify({ tcp: ["<b>bold</b>:80"] }));
    const invalid = await health(unit);
    assert.match(invalid.first_error, /is not host:port/);
    const page = await curl(unit, `${base}/`);
    assert.match(page, /&#60;b&#62;bold&#60;\/b&#62;:80/);
    assert.doesNotMatch(page, /<b>bold/);
  });

  await t.test("/health.json answers within the check budget with an unreachable target", async () => {
    await writeFile(
      permTargets,
      JSON.stringify({ tcp: [`${unreachableAddress}:80`, `${gatewayAddress}:${openPort}`] }),
    );
    const started = performance.now();
    const answers = await Promise.all([1, 2, 3].map(() => health(unit)));
    const elapsedMs = performance.now() - started;
    for (const answer of answers) {
      assert.equal(answer.first_error, `tcp ${unreachableAddress}:80: no result within 1500 ms`);
      assert.equal(
        answer.checks.find((check) => check.name === `tcp ${gatewayAddress}:${openPort}`)?.status,
        "ok",
      );
    }
    // The three requests arrived while one evaluation ran, and got its report.
    assert.deepEqual(answers[1], answers[0]);
    assert.deepEqual(answers[2], answers[0]);
    t.diagnostic(
      `three concurrent /health.json with an unreachable target answered in ${elapsedMs.toFixed(0)} ms`,
    );
    await rm(permTargets);
  });

  await t.test("the HTML tree at / shows unit, interface and checks", async () => {
    const page = await curl(unit, `${base}/`);
    assert.match(page, /^<!DOCTYPE html>/);
    assert.match(page, /unit unit-diagd-test \(version 2026\.11\.21-test, slot a, on trial/);
    assert.match(page, /<li>interface lan0/);
    for (const name of [
      "link lan0",
      "address lan0",
      `gateway ${gatewayAddress}`,
      `tcp ${gatewayAddress}:${openPort}`,
    ])
      assert.match(page, new RegExp(`<li class="ok">${name.replace(/\./g, "\\.")}: ok`));
  });

  await t.test("no default route: the gateway check is skipped, not failed", async () => {
    await unit.exec("ip", ["route", "del", "default"]);
    const noRoute = await health(unit);
    assert.equal(noRoute.first_error, "");
    const gatewayCheck = noRoute.checks[2];
    assert.equal(gatewayCheck?.name, "gateway");
    assert.equal(gatewayCheck.status, "skipped");
    assert.equal(gatewayCheck.detail, "no default route");
  });

  await t.test("link down: unhealthy, the link named first", async () => {
    await unit.exec("ip", ["link", "set", "lan0", "down"]);
    const down = await health(unit);
    assert.equal(down.first_error, "link lan0: link is down (want up)");
    await unit.exec("ip", ["link", "set", "lan0", "up"]);
    await unit.exec("ip", ["route", "add", "default", "via", gatewayAddress]);
    let back = await health(unit);
    for (let attempt = 0; attempt < 20 && back.first_error !== ""; attempt++) {
      await delay(250);
      back = await health(unit);
    }
    assert.equal(back.first_error, "");
  });

  await t.test("metrics pass promtool's lint; supervisor counters come from its status file", async () => {
    await unit.exec("sh", ["-c", `curl -sS --max-time 10 ${base}/metrics | promtool check metrics`]);
    const before = await curl(unit, `${base}/metrics`);
    assert.equal(sample(before, "rtr7_updates_total"), 0);
    assert.equal(sample(before, "rtr7_diagd_healthy"), 1);
    assert.equal(
      sample(
        before,
        "rtr7_build_info",
        `{version="${config.version}",slot="a",hostname="${config.hostname}"}`,
      ),
      1,
    );
    assert.ok((sample(before, "rtr7_network_receive_bytes_total", '{interface="lan0"}') ?? 0) > 0);
    assert.ok(sample(before, "process_cpu_seconds_total") !== undefined, "default process metrics missing");

    await writeSupervisorState(config.paths.run, {
      services: [
        { name: "diagd", state: "running", restarts: 2 },
        { name: "backupd", state: "backoff", restarts: 5 },
      ],
      counters: { updates: 3, failedUpdates: 1, rollbacks: 1 },
    });
    const after = await curl(unit, `${base}/metrics`);
    assert.equal(sample(after, "rtr7_updates_total"), 3);
    assert.equal(sample(after, "rtr7_update_failures_total"), 1);
    assert.equal(sample(after, "rtr7_rollbacks_total"), 1);
    assert.equal(sample(after, "rtr7_supervisor_restarts_total", '{service="diagd"}'), 2);
    assert.equal(sample(after, "rtr7_supervisor_restarts_total", '{service="backupd"}'), 5);
    await unit.exec("sh", ["-c", `curl -sS --max-time 10 ${base}/metrics | promtool check metrics`]);
  });

  await t.test("metrics under load: the veth's byte counters rise at every scrape", async () => {
    gateway.start("socat", ["-u", `TCP-LISTEN:${trafficPort},reuseaddr`, "/dev/null"]);
    await delay(300);
    const sender = unit.start("socat", ["-u", "/dev/zero", `TCP:${gatewayAddress}:${trafficPort}`]);
    t.after(() => sender.stop());
    const scrapes: { atMs: number; rx: number; tx: number; latencyMs: number }[] = [];
    const started = performance.now();
    while (performance.now() - started < 30_000) {
      const tick = performance.now();
      const { stdout } = await unit.exec("curl", [
        "-sS",
        "--max-time",
        "5",
        "-w",
        "\n%{time_total}\n",
        `${base}/metrics`,
      ]);
      const lines = stdout.trimEnd().split("\n");
      const latencyMs = Number(lines.pop()) * 1000;
      const body = lines.join("\n");
      const rx = sample(body, "rtr7_network_receive_bytes_total", '{interface="lan0"}');
      const tx = sample(body, "rtr7_network_transmit_bytes_total", '{interface="lan0"}');
      assert.ok(rx !== undefined && tx !== undefined, `lan0 counters missing from a scrape:\n${body}`);
      scrapes.push({ atMs: tick - started, rx, tx, latencyMs });
      await delay(Math.max(0, 1000 - (performance.now() - tick)));
    }
    await sender.stop();
    assert.ok(scrapes.length >= 25, `only ${scrapes.length} scrapes in 30 s`);
    for (let index = 1; index < scrapes.length; index++) {
      const previous = scrapes[index - 1];
      const current = scrapes[index];
      if (!previous || !current) continue;
      assert.ok(current.tx > previous.tx, `tx did not rise between scrapes ${index - 1} and ${index}`);
      assert.ok(current.rx > previous.rx, `rx did not rise between scrapes ${index - 1} and ${index}`);
    }
    const first = scrapes[0];
    const last = scrapes[scrapes.length - 1];
    if (first && last) {
      const seconds = (last.atMs - first.atMs) / 1000;
      const rate = (last.tx - first.tx) / seconds;
      const latencies = scrapes.map((scrape) => scrape.latencyMs).sort((a, b) => a - b);
      const percentile = (p: number): string =>
        (latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0).toFixed(1);
      t.diagnostic(
        `${scrapes.length} scrapes over ${seconds.toFixed(1)} s while sending ${(rate / 1024 / 1024).toFixed(0)} MiB/s ` +
          `(${((rate * 8) / 1e9).toFixed(2)} Gbit/s) through lan0; scrape latency ms: ` +
          `min ${percentile(0)}, median ${percentile(50)}, p90 ${percentile(90)}, max ${percentile(100)}`,
      );
    }
  });

  await diagd.stop();
  assert.equal(await diagd.exited(1000), 0, `diagd should exit 0 on SIGTERM:\n${diagd.output()}`);
});
