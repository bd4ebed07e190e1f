// Who `rtr7 fleet ls` lists and how: mDNS sightings merged with the
// inventory (mDNS's address wins, the inventory adds units mDNS cannot see),
// health probes bounded in number and noted in a real fleet store, units that
// do not answer shown with when they were last seen, and the table a person
// reads. The browse itself runs against real units in
// test/integration/fleet.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { writeFile } from "node:fs/promises";
import type { Service } from "bonjour-service";
import { isRtr7Error } from "../../lib/errors.js";
import { silentLogger } from "../../lib/log.js";
import type { HealthReport } from "../../lib/wire/health.js";
import {
  browsableAddresses,
  browseMdns,
  discoverUnits,
  mergeUnits,
  sightingOf,
  type KnownUnit,
  type MdnsSighting,
} from "../../updates/fleet/discover.js";
import { openFleetStore } from "../../updates/fleet/store.js";
import {
  formatFleetTable,
  mapBounded,
  reachableUnits,
  rowEvent,
  surveySummary,
  surveyUnits,
} from "../../updates/fleet/survey.js";
import { scratchDir } from "../helpers/scratch.js";

const log = silentLogger();
const txt = (version: string) => ({ hostname: "", version, slot: "a", model: "apu2" });
const sighting = (hostname: string, address: string, version = "v1"): MdnsSighting => ({
  hostname,
  address,
  port: 80,
  txt: { ...txt(version), hostname },
});

test("mDNS and the inventory merge into one sorted entry per unit; mDNS's address wins", () => {
  const units = mergeUnits(
    [
      { hostname: "shop-1", address: "10.1.0.9", mac: "00:0d:b9:00:00:01" },
      { hostname: "far-1", address: "10.9.0.2" },
      { hostname: "byname" },
    ],
    [sighting("shop-2", "10.1.0.2", "v2"), sighting("shop-1", "10.1.0.1"), sighting("shop-1", "10.1.0.5")],
  );
  assert.deepEqual(
    units.map((unit) => [unit.hostname, unit.address, unit.addressFrom, unit.sources.join("+")]),
    [
      ["byname", "byname", "hostname", "inventory"],
      ["far-1", "10.9.0.2", "inventory", "inventory"],
      ["shop-1", "10.1.0.1", "mdns", "mdns+inventory"],
      ["shop-2", "10.1.0.2", "mdns", "mdns"],
    ],
  );
  const shop1 = units.find((unit) => unit.hostname === "shop-1");
  assert.deepEqual(shop1?.mdns, { version: "v1", slot: "a", model: "apu2" });
  assert.equal(shop1?.inventory?.mac, "00:0d:b9:00:00:01");
});

test("an mDNS answer becomes a sighting: the TXT hostname, the address it came from, no bad names", () => {
  const service = (fields: Partial<Service>): Service =>
    ({
      name: "shop-1",
      port: 80,
      addresses: ["192.0.2.1", "10.1.0.1"],
      txt: txt("v1"),
      ...fields,
    }) as Service;
  assert.deepEqual(
    sightingOf(service({ referer: { address: "10.1.0.1", family: "IPv4", port: 5353, size: 0 } })),
    {
      hostname: "shop-1",
      address: "10.1.0.1",
      port: 80,
      txt: { hostname: "", version: "v1", slot: "a", model: "apu2" },
    },
  );
  // Not from one of its A records (a relay): the first A record.
  assert.equal(
    sightingOf(service({ referer: { address: "10.1.0.77", family: "IPv4", port: 5353, size: 0 } }))?.address,
    "192.0.2.1",
  );
  assert.equal(sightingOf(service({ txt: { ...txt("v1"), hostname: "shop-9" } }))?.hostname, "shop-9");
  assert.equal(sightingOf(service({ name: "not a hostname;rm -rf" })), undefined);
  assert.equal(sightingOf(service({ addresses: [] })), undefined);
});

test("browsing looks at every IPv4 interface but loopback, or only the one asked for", async (t) => {
  const interfaces = {
    lo: [{ address: "127.0.0.1", family: "IPv4", internal: true }],
    eth0: [
      { address: "fe80::1", family: "IPv6", internal: false },
      { address: "10.1.0.100", family: "IPv4", internal: false },
    ],
    eth1: [{ address: "192.168.5.2", family: "IPv4", internal: false }],
  } as unknown as NodeJS.Dict<import("node:os").NetworkInterfaceInfo[]>;
  assert.deepEqual(browsableAddresses(interfaces), ["10.1.0.100", "192.168.5.2"]);

  const home = await scratchDir(t, "fleet-discover");
  const inventoryFile = path.join(home, "fleet.json");
  await writeFile(inventoryFile, JSON.stringify({ units: [{ hostname: "far-1", address: "10.9.0.2" }] }));
  const asked: string[][] = [];
  const browseMdns = (options: { interfaceAddresses?: string[] }) => {
    asked.push(options.interfaceAddresses ?? []);
    return Promise.resolve([sighting("shop-1", "10.1.0.1")]);
  };
  const common = { inventoryFile, timeoutMs: 10, log, browseMdns, interfaces: () => interfaces };
  const all = await discoverUnits({ ...common, browse: true });
  assert.deepEqual(
    all.map((unit) => unit.hostname),
    ["far-1", "shop-1"],
  );
  await discoverUnits({ ...common, browse: true, interfaceName: "eth1" });
  assert.deepEqual(asked, [["10.1.0.100", "192.168.5.2"], ["192.168.5.2"]]);
  const inventoryOnly = await discoverUnits({ ...common, browse: false });
  assert.deepEqual(
    inventoryOnly.map((unit) => unit.hostname),
    ["far-1"],
  );
  assert.equal(asked.length, 2);
  await assert.rejects(discoverUnits({ ...common, browse: true, interfaceName: "wlan9" }), (error) =>
    isRtr7Error(error, "RTR7_ERR_USAGE"),
  );
});

function report(hostname: string, fields: Partial<HealthReport> = {}): HealthReport {
  return {
    first_error: "",
    hostname,
    version: "v2",
    slot: "b",
    trial: false,
    uptime_seconds: 5,
    checks: [],
    ...fields,
  };
}

test("the survey probes each unit, notes answers in the store, and says who did not answer", async (t) => {
  const dir = await scratchDir(t, "fleet-survey");
  const units = mergeUnits(
    [
      { hostname: "gone", address: "10.9.0.9" },
      { hostname: "was-here", address: "10.9.0.8" },
      { hostname: "impostor", address: "10.9.0.7" },
    ],
    [sighting("ok", "10.1.0.1"), sighting("sick", "10.1.0.2", "v1")],
  );
  const answers: Record<string, HealthReport | undefined> = {
    ok: report("ok"),
    sick: report("sick", { first_error: "link lan0: down", version: "v1", slot: "a", trial: true }),
    "was-here": report("was-here"),
    impostor: report("someone-else"),
  };
  const first = new Date("2026-11-29T10:00:00Z");
  const store = openFleetStore(path.join(dir, "fleet.sqlite"));
  t.after(() => store.close());
  await surveyUnits(units, {
    store,
    now: () => first,
    probe: (unit) => Promise.resolve(answers[unit.hostname]),
  });

  delete answers["was-here"];
  const later = new Date("2026-11-29T10:05:00Z");
  const rows = await surveyUnits(units, {
    store,
    now: () => later,
    probe: (unit) => Promise.resolve(answers[unit.hostname]),
  });
  const byName = Object.fromEntries(rows.map((row) => [row.hostname, rowEvent(row)]));
  assert.deepEqual(
    [byName.ok?.answered, byName.ok?.version, byName.ok?.slot, byName.ok?.health, byName.ok?.lastSeen],
    [true, "v2", "b", "healthy", later.toISOString()],
  );
  assert.deepEqual([byName.sick?.health, byName.sick?.trial], ["link lan0: down", true]);
  // Silent now: what it ran when it last answered, and when that was.
  assert.deepEqual(
    [byName["was-here"]?.answered, byName["was-here"]?.health, byName["was-here"]?.version],
    [false, "no answer", "v2"],
  );
  assert.equal(byName["was-here"]?.lastSeen, first.toISOString());
  assert.deepEqual(
    [byName.gone?.health, byName.gone?.lastSeen, byName.gone?.version],
    ["no answer", null, ""],
  );
  assert.deepEqual([byName.impostor?.answered, byName.impostor?.health], [false, "answers as someone-else"]);
  assert.deepEqual(
    reachableUnits(rows).map((unit) => unit.hostname),
    ["ok", "sick"],
  );
  assert.deepEqual(surveySummary(rows), {
    units: 5,
    answered: 2,
    healthy: 1,
    unhealthy: 1,
    notAnswering: ["gone", "impostor", "was-here"],
  });
  assert.equal(store.lastSeen().get("impostor"), undefined);

  const table = formatFleetTable(rows, later).split("\n");
  assert.deepEqual(table, [
    "HOSTNAME  ADDRESS   VERSION  SLOT  TRIAL  HEALTH                   LAST SEEN  SOURCE",
    "gone      10.9.0.9  -        -     -      no answer                never      inventory",
    "impostor  10.9.0.7  -        -     -      answers as someone-else  never      inventory",
    "ok        10.1.0.1  v2       b     no     healthy                  now        mdns",
    "sick      10.1.0.2  v1       a     yes    link lan0: down          now        mdns",
    "was-here  10.9.0.8  v2       b     no     no answer                5m ago     inventory",
  ]);
});

test("probes run at most `concurrency` at a time, and results keep the units' order", async () => {
  let running = 0;
  let most = 0;
  const units = Array.from({ length: 50 }, (_, index) => ({ hostname: `u${index}` }) as KnownUnit);
  const results = await mapBounded(units, 7, async (unit) => {
    running += 1;
    most = Math.max(most, running);
    await new Promise((resolve) => setImmediate(resolve));
    running -= 1;
    return unit.hostname;
  });
  assert.equal(most, 7);
  assert.deepEqual(
    results,
    units.map((unit) => unit.hostname),
  );
  assert.deepEqual(await mapBounded([], 7, () => Promise.resolve(1)), []);
});

test("a browse closes every socket it opened", async () => {
  const udpHandles = () => process.getActiveResourcesInfo().filter((name) => name === "UDPWrap").length;
  const before = udpHandles();
  // On loopback only: nothing leaves the host (the send may fail there, which is logged, not thrown).
  const found = await browseMdns({ timeoutMs: 50, log, interfaceAddresses: ["127.0.0.1"] });
  assert.ok(Array.isArray(found));
  // dgram reports a socket closed when libuv is told to close it; its handle goes on the next turns.
  for (let turn = 0; turn < 100 && udpHandles() > before; turn++)
    await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(udpHandles(), before);
});
