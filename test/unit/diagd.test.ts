// diagd without a network: the parsers of /proc/net/route, `ip -o addr` and
// diagd.json, the evaluator against a fake machine (order, verdict,
// per-check budget, single-flight, choice of interface), the page's escaping
// and the metrics (current kernel values at each scrape, an interface that
// disappears, the supervisor's file), all through fastify's inject().
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { silentLogger } from "../../lib/log.js";
import type { HealthReport } from "../../lib/wire/health.js";
import { HealthEvaluator } from "../../router/diagd/health.js";
import { escapeHtml } from "../../router/diagd/page.js";
import { buildDiagdApp } from "../../router/diagd/server.js";
import {
  parseDefaultRoutes,
  parseIpAddrOneline,
  type LinkState,
  type ProbeResult,
  type SystemView,
} from "../../router/diagd/system.js";
import { parseTargets } from "../../router/diagd/targets.js";
import { writeSupervisorState } from "../../router/supervisor/state.js";
import type { ServiceConfig } from "../../router/unit.js";
import { scratchDir } from "../helpers/scratch.js";
import { fileBackedUnitPaths } from "../helpers/unit-paths.js";

test("parseDefaultRoutes: default routes with a gateway, lowest metric first, in host byte order", () => {
  const text = [
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT",
    "wan0\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0",
    "lan0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0",
    "lan0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0",
    "tun0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0",
  ].join("\n");
  assert.deepEqual(parseDefaultRoutes(text, "LE"), [
    { interfaceName: "lan0", gateway: "10.0.0.1", metric: 100 },
    { interfaceName: "wan0", gateway: "192.168.1.1", metric: 200 },
  ]);
  assert.deepEqual(parseDefaultRoutes(text.split("\n")[0] ?? "", "LE"), []);
});

test("parseIpAddrOneline: busybox's and iproute2's one-line output", () => {
  const output = [
    "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever",
    "2: lan0    inet 10.81.0.2/24 brd 10.81.0.255 scope global lan0\\       valid_lft forever",
    "2: lan0    inet 10.81.0.3/24 scope global secondary lan0",
    "3: veth1@if2    inet 10.9.0.1/30 scope global veth1",
  ].join("\n");
  assert.deepEqual(parseIpAddrOneline(output), [
    { interfaceName: "lo", cidr: "127.0.0.1/8", address: "127.0.0.1" },
    { interfaceName: "lan0", cidr: "10.81.0.2/24", address: "10.81.0.2" },
    { interfaceName: "lan0", cidr: "10.81.0.3/24", address: "10.81.0.3" },
    { interfaceName: "veth1", cidr: "10.9.0.1/30", address: "10.9.0.1" },
  ]);
});

test("parseTargets: host:port and [v6]:port; clear errors for anything else", () => {
  assert.deepEqual(parseTargets('{"tcp": ["192.0.2.1:80", "[2001:db8::1]:443", "example.org:22"]}').tcp, [
    { host: "192.0.2.1", port: 80, text: "192.0.2.1:80" },
    { host: "2001:db8::1", port: 443, text: "[2001:db8::1]:443" },
    { host: "example.org", port: 22, text: "example.org:22" },
  ]);
  assert.deepEqual(parseTargets("{}"), { tcp: [] });
  assert.throws(() => parseTargets('{"tcp": ['), /^Error: not valid JSON \(.*\); want \{"tcp"/);
  assert.throws(() => parseTargets("[]"), /got an array; want/);
  assert.throws(() => parseTargets('{"tcps": []}'), /unknown key "tcps"/);
  assert.throws(() => parseTargets('{"tcp": "192.0.2.1:80"}'), /"tcp" is "192.0.2.1:80", not a list/);
  assert.throws(() => parseTargets('{"tcp": [80]}'), /tcp entry 80 is not a string/);
  assert.throws(() => parseTargets('{"tcp": ["192.0.2.1"]}'), /"192.0.2.1" is not host:port/);
  assert.throws(() => parseTargets('{"tcp": ["192.0.2.1:70000"]}'), /is not host:port/);
  assert.throws(() => parseTargets('{"tcp": ["<b>:80"]}'), /is not host:port/);
});

test("escapeHtml escapes markup and quotes", () => {
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), "&#60;a href=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/a&#62;");
});

/** A machine whose every answer the test sets, counting pings. */
class FakeSystem implements SystemView {
  links: Record<string, LinkState> = { lo: up("unknown", true), lan0: up("up", true) };
  addressList = [
    { interfaceName: "lo", cidr: "127.0.0.1/8", address: "127.0.0.1" },
    { interfaceName: "lan0", cidr: "10.0.0.2/24", address: "10.0.0.2" },
  ];
  routes = [{ interfaceName: "lan0", gateway: "10.0.0.1", metric: 0 }];
  pingResult: () => Promise<ProbeResult> = () => Promise.resolve({ ok: true, detail: "answered in 0.1 ms" });
  tcpResult: (host: string, port: number) => Promise<ProbeResult> = () =>
    Promise.resolve({ ok: true, detail: "connected" });
  stats: Record<string, Record<string, number>> = { lo: { rx_bytes: 10 }, lan0: { rx_bytes: 1000 } };
  pings = 0;

  interfaceNames(): string[] {
    return Object.keys(this.links).sort();
  }
  linkState(name: string): Promise<LinkState> {
    return Promise.resolve(
      this.links[name] ?? { operstate: undefined, carrier: undefined, speedMbps: undefined },
    );
  }
  addresses() {
    return Promise.resolve(this.addressList);
  }
  defaultRoutes() {
    return Promise.resolve(this.routes);
  }
  ping(): Promise<ProbeResult> {
    this.pings += 1;
    return this.pingResult();
  }
  tcpConnect(host: string, port: number): Promise<ProbeResult> {
    return this.tcpResult(host, port);
  }
  statistic(name: string, counter: string): number | undefined {
    return this.stats[name]?.[counter];
  }
}

function up(operstate: string, carrier: boolean): LinkState {
  return { operstate, carrier, speedMbps: undefined };
}

async function unitConfig(dir: string): Promise<ServiceConfig> {
  const paths = await fileBackedUnitPaths(dir);
  return {
    mode: "process",
    hostname: "unit<1>",
    version: "v1",
    model: "process",
    slot: "b",
    trial: false,
    address: "10.0.0.2",
    ports: { update: 8080, diagd: 7733, backupd: 8077 },
    paths,
    bootedAtMs: 0,
  };
}

test("the evaluator: checks in order, the first failure named, skipped is not an error", async (t) => {
  const config = await unitConfig(await scratchDir(t, "diagd-unit"));
  await writeFile(path.join(config.paths.etc, "diagd.json"), '{"tcp": ["10.0.0.1:80", "10.0.0.1:81"]}');
  const system = new FakeSystem();
  system.tcpResult = (_host, port) =>
    Promise.resolve(
      port === 81 ? { ok: false, detail: "no connection (ECONNREFUSED)" } : { ok: true, detail: "ok" },
    );
  const evaluator = new HealthEvaluator({ config, system, now: () => 42_000 });
  const { report } = await evaluator.evaluate();
  assert.deepEqual(
    report.checks.map((check) => `${check.name} ${check.status}`),
    [
      "link lan0 ok",
      "address lan0 ok",
      "gateway 10.0.0.1 ok",
      "tcp 10.0.0.1:80 ok",
      "tcp 10.0.0.1:81 failed",
    ],
  );
  assert.equal(report.first_error, "tcp 10.0.0.1:81: no connection (ECONNREFUSED)");
  assert.equal(report.uptime_seconds, 42);
  assert.equal(report.slot, "b");

  system.routes = [];
  system.tcpResult = () => Promise.resolve({ ok: true, detail: "ok" });
  const noRoute = (await evaluator.evaluate()).report;
  assert.equal(noRoute.first_error, "");
  assert.deepEqual(
    [noRoute.checks[2]?.name, noRoute.checks[2]?.status, noRoute.checks[2]?.detail],
    ["gateway", "skipped", "no default route"],
  );

  system.links.lan0 = up("down", false);
  assert.equal((await evaluator.evaluate()).report.first_error, "link lan0: link is down (want up)");
  system.links.lan0 = up("unknown", true);
  assert.equal((await evaluator.evaluate()).report.first_error, "", "unknown with carrier (tun, lo) is up");
});

test("the evaluator: a check that overruns its budget fails; concurrent requests share one evaluation", async (t) => {
  const config = await unitConfig(await scratchDir(t, "diagd-unit"));
  const system = new FakeSystem();
  system.pingResult = () => new Promise(() => undefined);
  const evaluator = new HealthEvaluator({ config, system, checkTimeoutMs: 50 });
  const reports = await Promise.all([1, 2, 3, 4].map(() => evaluator.evaluate()));
  assert.equal(system.pings, 1, "four concurrent requests should cost one ping");
  for (const evaluation of reports) assert.equal(evaluation, reports[0]);
  assert.equal(reports[0]?.report.first_error, "gateway 10.0.0.1: no result within 50 ms");
  await evaluator.evaluate();
  assert.equal(system.pings, 2, "a request after the evaluation finished starts a new one");
});

test("the evaluator chooses the interface holding config.address, else the first one up", async (t) => {
  const config = await unitConfig(await scratchDir(t, "diagd-unit"));
  const system = new FakeSystem();
  system.links = {
    eth1: up("down", false),
    lan0: up("up", true),
    lo: up("unknown", true),
    wan0: up("up", true),
  };
  system.addressList = [{ interfaceName: "wan0", cidr: "10.0.0.2/24", address: "10.0.0.2" }];
  assert.equal((await new HealthEvaluator({ config, system }).evaluate()).interfaceName, "wan0");
  system.addressList = [];
  assert.equal((await new HealthEvaluator({ config, system }).evaluate()).interfaceName, "lan0");
  const named = new HealthEvaluator({ config: { ...config, interfaceName: "eth1" }, system });
  assert.equal((await named.evaluate()).report.first_error, "link eth1: link is down (want up)");
});

test("diagd's HTTP side: /health.json, the escaped page and /metrics at each scrape", async (t) => {
  const config = await unitConfig(await scratchDir(t, "diagd-unit"));
  const system = new FakeSystem();
  const app = buildDiagdApp({ config, log: silentLogger(), system });
  t.after(() => app.close());

  const health = await app.inject({ url: "/health.json" });
  assert.equal(health.statusCode, 200);
  assert.equal(health.json<HealthReport>().first_error, "");

  const page = await app.inject({ url: "/" });
  assert.match(String(page.headers["content-type"]), /^text\/html/);
  assert.match(page.body, /unit unit&#60;1&#62;/);
  assert.doesNotMatch(page.body, /unit<1>/);

  const scrape = async (): Promise<string> => {
    const response = await app.inject({ url: "/metrics" });
    assert.match(String(response.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
    return response.body;
  };
  const first = await scrape();
  assert.match(first, /^rtr7_network_receive_bytes_total\{interface="lan0"\} 1000$/m);
  assert.match(first, /^rtr7_updates_total 0$/m);
  assert.match(first, /^rtr7_diagd_healthy 1$/m);
  assert.match(first, /^rtr7_build_info\{version="v1",slot="b",hostname="unit<1>"\} 1$/m);

  system.stats.lan0 = { rx_bytes: 5000 };
  delete system.stats.lo;
  await writeSupervisorState(config.paths.run, {
    services: [{ name: "mdns", state: "running", restarts: 4 }],
    counters: { updates: 2, failedUpdates: 0, rollbacks: 0 },
  });
  const second = await scrape();
  assert.match(second, /^rtr7_network_receive_bytes_total\{interface="lan0"\} 5000$/m);
  assert.doesNotMatch(
    second,
    /rtr7_network_receive_bytes_total\{interface="lo"\}/,
    "a vanished interface stays",
  );
  assert.match(second, /^rtr7_updates_total 2$/m);
  assert.match(second, /^rtr7_supervisor_restarts_total\{service="mdns"\} 4$/m);
});

test("diagd answers errors in rtr7's shape: an unknown path 404, a failing scrape 500", async (t) => {
  const config = await unitConfig(await scratchDir(t, "diagd-unit"));
  const system = new FakeSystem();
  const app = buildDiagdApp({ config, log: silentLogger(), system });
  t.after(() => app.close());

  const missing = await app.inject({ url: "/health" });
  assert.equal(missing.statusCode, 404);
  assert.equal(missing.headers["content-type"], "application/json");
  const notFound = missing.json<{ code: string; message: string; hint: string }>();
  assert.deepEqual(Object.keys(notFound).sort(), ["code", "hint", "message"]);
  assert.equal(notFound.code, "RTR7_ERR_HTTP_NOT_FOUND");
  assert.match(notFound.message, /^GET \/health: /);
  assert.match(notFound.hint, /\/health\.json/);

  system.statistic = () => {
    throw new Error("sysfs went away");
  };
  const failed = await app.inject({ url: "/metrics" });
  assert.equal(failed.statusCode, 500);
  assert.equal(failed.headers["content-type"], "application/json");
  const internal = failed.json<{ code: string; message: string; hint: string }>();
  assert.equal(internal.code, "RTR7_ERR_INTERNAL");
  assert.match(internal.message, /^GET \/metrics: .*sysfs went away/);
});
