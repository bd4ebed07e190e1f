// rtr7 fleet against a small fleet of process-mode units (test/helpers/
// fleet-lab.ts): five units and a workstation on one bridge, and a sixth unit
// on a routed subnet behind a router namespace, known only from the
// inventory. Every unit starts from one fleet release built without
// --hostname, and takes its name from /perm/hostname. The lab is built once
// in `before`, for every test: starting units is the expensive part.
//   ls: `rtr7 fleet ls --json`, run in the workstation namespace, lists all
//      six with their versions (the five found by mDNS, as avahi-browse finds
//      them too; the sixth though mDNS cannot see it) and an inventory unit
//      that nobody answers for as not answering;
//   1. a fleet release v2 reaches the five, canary first, then two at a time;
//      each unit keeps its hostname and its /perm;
//   2. v3's diagd checks a TCP service that one unit cannot reach (a
//      blackhole route in its namespace): that unit's v3 reports unhealthy,
//      it is rolled back, and with --max-failures 0 no unit after its wave
//      starts; the summary names it and why;
//   3. the CLI is SIGKILLed while a wave is on trial; `fleet resume` brings
//      those units to a committed slot and finishes the rollout, and the
//      units finished before the kill are not updated again.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { avahiTools, startAvahiBrowser, type AvahiBrowser } from "../../lab/avahi.js";
import { haveTool } from "../../lab/processes.js";
import { parsePublicKey } from "../../lib/trust/minisign.js";
import { inventoryFile, inventoryUnit } from "../../updates/fleet/inventory.js";
import { startFleetLab, type FleetLab } from "../helpers/fleet-lab.js";
import { isRoot } from "../helpers/netns.js";
import { cliEntry } from "../helpers/paths.js";
import { jsonEvents } from "../helpers/scratch.js";
import { removeUnitImages, unitImages } from "../helpers/unit-images.js";

const version = "fleet-v1";
const hostnames = ["shop-1", "shop-2", "shop-3", "shop-4", "shop-5"];
const bridgeUnits = hostnames;
const routedUnit = "far-1";
/** In the inventory, on the routed subnet, where nothing answers. */
const goneUnit = { hostname: "gone-1", address: "10.71.0.99" };
const subnet = "10.70";
/** A service on the workstation's side that v3's diagd checks; shop-2 cannot reach it. */
const service = `${subnet}.0.200`;
const tools = ["ip", "curl", "mksquashfs", "unsquashfs", "mkfs.fat", "mcopy", "syslinux", ...avahiTools];

async function cannotRun(): Promise<string | undefined> {
  if (!isRoot()) return "needs root: network namespaces and port 80";
  for (const tool of tools) if (!(await haveTool(tool))) return `needs ${tool}: run scripts/setup.sh`;
  return undefined;
}
const skip = await cannotRun();

interface UnitEvent {
  event: "unit";
  hostname: string;
  address: string;
  answered: boolean;
  version: string;
  slot: string;
  trial: boolean | null;
  health: string;
  lastSeen: string | null;
  sources: string[];
}

interface Health {
  hostname: string;
  version: string;
  slot: string;
  trial: boolean;
  first_error: string;
}

describe("rtr7 fleet: five units on a bridge, one routed", { skip, timeout: 30 * 60_000 }, () => {
  let lab: FleetLab;
  let avahi: AvahiBrowser | undefined;
  const releases: Record<string, string> = {};
  let work = "";
  let keyId = "";

  const health = async (hostname: string): Promise<Health | undefined> => {
    const curl = lab.startInWorkstation("curl", [
      "-s",
      "--max-time",
      "3",
      `http://${lab.unit(hostname).address}:7733/health.json`,
    ]);
    await curl.exited(10_000);
    try {
      return JSON.parse(curl.output()) as Health;
    } catch {
      return undefined;
    }
  };
  const fleetUpdate = (release: string, extra: string[] = [], soak = "1s"): string[] => [
    "fleet",
    "update",
    "--release",
    release,
    "--select",
    "shop-*",
    "--canary",
    "1",
    "--parallel",
    "2",
    "--soak",
    soak,
    "--health-timeout",
    "20s",
    "--no-browse",
    "--json",
    "--updates-dir",
    lab.updatesDir,
    ...extra,
  ];
  const unitEnds = (output: string) =>
    jsonEvents(output).filter((event) => event.event === "unit-end") as {
      unit: string;
      state: string;
      reason?: string;
    }[];

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "rtr7-fleet-"));
    const diagdConfig = path.join(work, "fleet-v3-diagd.json");
    await writeFile(diagdConfig, JSON.stringify({ tcp: [`${service}:7999`] }));
    // Fleet releases: no hostname.
    // Built at once, but dated in version order: units that trust a key
    // refuse a release built before the one they run (rollback protection).
    const built = (minute: number) => new Date(Date.UTC(2026, 11, 1, 9, minute)).toISOString();
    [releases.v1, releases.v2, releases.v3, releases.v4] = await Promise.all([
      unitImages({ version, buildTime: built(1) }),
      unitImages({ version: "fleet-v2", buildTime: built(2) }),
      unitImages({
        version: "fleet-v3",
        add: [{ source: diagdConfig, destination: "/etc/rtr7/diagd.json" }],
        buildTime: built(3),
      }),
      unitImages({ version: "fleet-v4", buildTime: built(4) }),
    ]);
    lab = await startFleetLab({
      label: "flt",
      subnet,
      units: hostnames.map((hostname) => ({
        hostname,
        imagesDir: releases.v1 ?? "",
        permFiles: { "data/keep.txt": `${hostname}'s own data\n` },
      })),
      routedUnit: { hostname: routedUnit, imagesDir: releases.v1 ?? "" },
      // `rtr7 keys init` first: every rollout below is signed with no extra flag.
      signing: true,
    });
    keyId = parsePublicKey(
      await readFile(path.join(lab.configHome, "rtr7", "keys", "signing.pub"), "utf8"),
      "signing.pub",
    ).keyId;
    await lab.writePasswords();
    await lab.writeInventory([
      { hostname: routedUnit, address: lab.unit(routedUnit).address },
      goneUnit,
      // Known both ways: listed once, with both sources.
      { hostname: "shop-1", address: lab.unit("shop-1").address },
    ]);
    // The service v3 checks, on a second workstation address; shop-2 has no route to it.
    await lab.workstation.exec("ip", ["addr", "add", `${service}/24`, "dev", lab.workstationInterface]);
    lab.startInWorkstation(process.execPath, [
      "-e",
      `require("node:net").createServer((s) => s.end()).listen(7999, "${service}")`,
    ]);
    await lab.unit("shop-2").ns.exec("ip", ["route", "add", "blackhole", `${service}/32`]);
  });

  after(async () => {
    await avahi?.stop();
    await lab?.destroy();
    await removeUnitImages();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test("fleet ls lists the five by mDNS, the routed one and the missing one from the inventory", async () => {
    // A workstation usually runs avahi: rtr7's browser must share port 5353 with it.
    avahi = await startAvahiBrowser(lab.workstation, lab.workstationInterface);
    const { code, output } = await lab.cli(
      ["fleet", "ls", "--json", "--timeout", "3s", "--updates-dir", lab.updatesDir],
      { timeoutMs: 60_000 },
    );
    assert.equal(code, 0, output);
    const events = jsonEvents(output);
    const units = events.filter((event) => event.event === "unit") as unknown as UnitEvent[];
    assert.deepEqual(
      units.map((unit) => unit.hostname),
      [...bridgeUnits, routedUnit, goneUnit.hostname].sort(),
      output,
    );
    for (const hostname of [...bridgeUnits, routedUnit]) {
      const unit = units.find((each) => each.hostname === hostname);
      assert.ok(unit);
      assert.equal(unit.answered, true, `${hostname}: ${JSON.stringify(unit)}`);
      assert.equal(unit.version, version);
      assert.equal(unit.slot, "a");
      assert.equal(unit.trial, false);
      assert.equal(unit.health, "healthy", `${hostname}: ${JSON.stringify(unit)}`);
      assert.equal(unit.address, lab.unit(hostname).address);
      assert.ok(unit.lastSeen !== null && !Number.isNaN(Date.parse(unit.lastSeen)));
    }
    for (const hostname of bridgeUnits) {
      const unit = units.find((each) => each.hostname === hostname);
      assert.deepEqual(unit?.sources, hostname === "shop-1" ? ["mdns", "inventory"] : ["mdns"]);
    }
    // The routed unit is out of mDNS's reach: only the inventory knows it.
    assert.deepEqual(units.find((each) => each.hostname === routedUnit)?.sources, ["inventory"]);
    const gone = units.find((each) => each.hostname === goneUnit.hostname);
    assert.equal(gone?.answered, false);
    assert.equal(gone?.health, "no answer");
    assert.equal(gone?.lastSeen, null);
    const summary = events.find((event) => event.event === "summary");
    assert.deepEqual(
      { units: summary?.units, answered: summary?.answered, notAnswering: summary?.notAnswering },
      { units: 7, answered: 6, notAnswering: [goneUnit.hostname] },
    );

    // avahi, in the same namespace, resolves the same five announcements.
    const watch = avahi.watch("_rtr7._tcp");
    try {
      for (const hostname of bridgeUnits) {
        const record = await watch.waitFor(
          (each) => each.event === "=" && each.name === hostname && each.type === "_rtr7._tcp",
          20_000,
        );
        assert.equal(record.address, lab.unit(hostname).address);
        assert.equal(record.txt?.version, version);
      }
      assert.equal(
        watch.records().some((each) => each.name === routedUnit),
        false,
        "avahi should not see the routed unit",
      );
    } finally {
      await watch.stop();
    }
  });

  test("fleet ls's table shows the same units to a person", async () => {
    const { code, output } = await lab.cli(
      ["fleet", "ls", "--timeout", "2s", "--updates-dir", lab.updatesDir],
      {
        timeoutMs: 60_000,
      },
    );
    assert.equal(code, 0, output);
    assert.match(output, /^HOSTNAME\s+ADDRESS\s+VERSION\s+SLOT\s+TRIAL\s+HEALTH\s+LAST SEEN\s+SOURCE$/m);
    for (const hostname of [...bridgeUnits, routedUnit])
      assert.match(
        output,
        new RegExp(`^${hostname}\\s+\\S+\\s+${version}\\s+a\\s+no\\s+healthy\\s+now\\s`, "m"),
      );
    assert.match(output, /^gone-1\s+10\.71\.0\.99\s+-\s+-\s+-\s+no answer\s+never\s+inventory$/m);
    assert.match(output, /7 units: 6 healthy, 0 unhealthy, 1 not answering\./);
  });
  test("one fleet release reaches all five, canary first, then two at a time; hostnames and /perm kept", async () => {
    // Rollouts take their units from the inventory (--no-browse).
    await lab.writeInventory(lab.units.map((unit) => ({ hostname: unit.hostname, address: unit.address })));
    const { code, output } = await lab.cli(fleetUpdate(releases.v2 ?? ""), { timeoutMs: 10 * 60_000 });
    assert.equal(code, 0, output.slice(-6000));
    const events = jsonEvents(output);
    const order = events
      .filter((event) => event.event === "unit-start" || event.event === "unit-end")
      .map((event) => `${String(event.event)} ${String(event.unit)}`);
    // The canary ends before anyone else starts; a wave of two ends before the next starts.
    assert.ok(order.indexOf("unit-end shop-1") < order.indexOf("unit-start shop-2"), order.join(", "));
    assert.ok(order.indexOf("unit-end shop-2") < order.indexOf("unit-start shop-4"), order.join(", "));
    assert.ok(order.indexOf("unit-end shop-3") < order.indexOf("unit-start shop-4"), order.join(", "));
    assert.ok(
      order.indexOf("unit-start shop-3") < order.indexOf("unit-end shop-2"),
      "shop-2 and shop-3 ran at once",
    );
    const end = events.find((event) => event.event === "rollout-end");
    assert.equal(end?.status, "finished");
    assert.equal(end?.succeeded, 5);
    for (const unit of lab.units.filter((each) => hostnames.includes(each.hostname))) {
      const now = await health(unit.hostname);
      assert.equal(now?.version, "fleet-v2", unit.hostname);
      assert.equal(now?.hostname, unit.hostname);
      assert.equal(now?.trial, false);
      assert.equal(now?.slot, "b");
      assert.equal(
        await readFile(path.join(unit.dir, "perm", "data", "keep.txt"), "utf8"),
        `${unit.hostname}'s own data\n`,
      );
      assert.equal((await readFile(path.join(unit.dir, "perm", "hostname"), "utf8")).trim(), unit.hostname);
      // Signing on, with no flag: the unit trusts the workstation's key, and
      // its run sent the release signed by it (the unit refuses anything else).
      assert.deepEqual(await readdir(path.join(unit.dir, "perm", "rtr7", "trusted-keys")), [`${keyId}.pub`]);
      const [runDir] = await readdir(path.join(lab.updatesDir, unit.hostname));
      const runEvents = await readFile(
        path.join(lab.updatesDir, unit.hostname, runDir ?? "", "events.jsonl"),
        "utf8",
      );
      assert.match(runEvents, /"event":"signature","outcome":"signed"/, unit.hostname);
      // TLS on, with no flag: the first contact pinned the unit's own certificate.
      const pin = (await inventoryUnit(inventoryFile(lab.env), unit.hostname))?.tlsFingerprint;
      const certificate = await readFile(path.join(unit.dir, "perm", "rtr7", "tls", "cert.pem"));
      assert.equal(pin, new X509Certificate(certificate).fingerprint256, unit.hostname);
    }
    const status = await lab.cli(["fleet", "status", "--updates-dir", lab.updatesDir]);
    assert.equal(status.code, 0, status.output);
    assert.match(status.output, /of fleet-v2 to 5 units: finished: 5 succeeded/);
    assert.match(status.output, /^shop-4\s+fleet-v1 → fleet-v2\s+succeeded\s+\d+ s/m);
  });

  test("an unhealthy unit is rolled back and halts the rollout; the summary names it and why", async () => {
    const { code, output } = await lab.cli(fleetUpdate(releases.v3 ?? "", ["--max-failures", "0"]), {
      timeoutMs: 10 * 60_000,
    });
    assert.equal(code, 1, output.slice(-6000));
    const ends = Object.fromEntries(unitEnds(output).map((event) => [event.unit, event]));
    assert.equal(ends["shop-1"]?.state, "succeeded");
    assert.equal(ends["shop-3"]?.state, "succeeded");
    assert.equal(ends["shop-2"]?.state, "failed");
    assert.match(
      ends["shop-2"]?.reason ?? "",
      new RegExp(`fleet-v3 was not healthy.*tcp ${service}:7999.*rolled back: shop-2 now runs fleet-v2`),
    );
    // No unit after the failing wave started.
    assert.equal(ends["shop-4"], undefined);
    assert.equal(ends["shop-5"], undefined);
    const end = jsonEvents(output).find((event) => event.event === "rollout-end");
    assert.equal(end?.status, "halted");
    assert.deepEqual(end?.failedUnits, ["shop-2"]);
    assert.equal((await health("shop-2"))?.version, "fleet-v2");
    assert.equal((await health("shop-2"))?.trial, false);
    assert.equal((await health("shop-4"))?.version, "fleet-v2");
    const status = await lab.cli(["fleet", "status", "--updates-dir", lab.updatesDir]);
    assert.match(
      status.output,
      /: halted \(1 unit failed \(allowed: 0\); no further unit starts\): 2 succeeded, 1 failed, 2 not started/,
    );
    assert.match(status.output, /^shop-2\s+fleet-v2 → fleet-v3\s+failed\s+\d+ s\s+fleet-v3 was not healthy/m);
    assert.match(status.output, /^shop-5\s+\? → fleet-v3\s+not started/m);
  });

  test("SIGKILL in the middle of a wave, then fleet resume: finished units are not updated again", async () => {
    const killed = lab.startInWorkstation(process.execPath, [
      cliEntry,
      ...fleetUpdate(releases.v4 ?? "", [], "6s"),
    ]);
    const start = await killed.waitForLine(/"event":"rollout-start"/, 60_000);
    const rolloutId = String((JSON.parse(start) as { id: string }).id);
    await killed.waitForLine(/"event":"unit-end".*"unit":"shop-1"/, 5 * 60_000);
    // shop-2 on trial, soaking: nobody will commit it now.
    await killed.waitForLine(/"event":"unit-step","unit":"shop-[23]","step":"soak"/, 5 * 60_000);
    killed.child.kill("SIGKILL");
    await killed.exited(10_000);
    const interrupted = await lab.cli([
      "fleet",
      "status",
      rolloutId,
      "--json",
      "--updates-dir",
      lab.updatesDir,
    ]);
    const rollout = jsonEvents(interrupted.output).find((event) => event.event === "rollout");
    assert.equal(rollout?.state, "interrupted", interrupted.output);
    const runsBefore = jsonEvents(interrupted.output).filter((event) => event.event === "unit") as {
      hostname: string;
      runDir?: string;
      attempts: number;
    }[];
    const shop1Run = runsBefore.find((unit) => unit.hostname === "shop-1")?.runDir;

    const resumed = await lab.cli(["fleet", "resume", rolloutId, "--json", "--updates-dir", lab.updatesDir], {
      timeoutMs: 10 * 60_000,
    });
    assert.equal(resumed.code, 0, resumed.output.slice(-6000));
    assert.ok(!unitEnds(resumed.output).some((event) => event.unit === "shop-1"), "shop-1 was updated again");
    const after = await lab.cli(["fleet", "status", rolloutId, "--json", "--updates-dir", lab.updatesDir]);
    const units = jsonEvents(after.output).filter((event) => event.event === "unit") as {
      hostname: string;
      state: string;
      runDir?: string;
      attempts: number;
    }[];
    assert.deepEqual(
      units.map((unit) => [unit.hostname, unit.state]),
      hostnames.map((hostname) => [hostname, "succeeded"]),
    );
    const shop1 = units.find((unit) => unit.hostname === "shop-1");
    assert.equal(shop1?.attempts, 1);
    assert.equal(shop1?.runDir, shop1Run);
    for (const hostname of hostnames) {
      const now = await health(hostname);
      assert.equal(now?.version, "fleet-v4", hostname);
      assert.equal(now?.trial, false, hostname);
    }
  });
});
