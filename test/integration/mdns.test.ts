// The unit's mDNS announcement as a real browser sees it: the mdns service
// runs as its own process in the "unit" namespace, avahi (lab/avahi.ts: a
// private dbus-daemon and avahi-daemon) browses in the "lan" namespace across
// a veth pair. The announcement must resolve with the unit's TXT record, and
// after SIGTERM it must be gone from avahi's cache: the PTR record's TTL is
// 8 hours, so only the goodbye packet sent on close() removes it in time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { avahiTools, startAvahiBrowser, type AvahiRecord } from "../../lab/avahi.js";
import type { ServiceConfig } from "../../router/unit.js";
import { joinWithVeth, namespacesFor, requireRootAndTools } from "../helpers/netns.js";
import { repoPath } from "../helpers/paths.js";
import { scratchDir } from "../helpers/scratch.js";

const unitAddress = "10.82.0.2";

test(
  "the unit's _rtr7._tcp announcement is seen by avahi and withdrawn on SIGTERM",
  { timeout: 120_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["ip", ...avahiTools]))) return;
    const work = await scratchDir(t, "mdns");
    const [unit, lan] = await namespacesFor(t, "mdnsunit", "mdnslan");
    if (!unit || !lan) throw new Error("no namespaces");
    await joinWithVeth(unit, { device: "lan0", cidr: `${unitAddress}/24` }, lan, {
      device: "eth0",
      cidr: "10.82.0.1/24",
    });
    const avahi = await startAvahiBrowser(lan, "eth0");
    t.after(() => avahi.stop());

    const config: ServiceConfig = {
      mode: "process",
      hostname: "unit-mdns-test",
      version: "2026.11.21-test",
      model: "process",
      slot: "b",
      trial: false,
      address: unitAddress,
      ports: { update: 8080, diagd: 7733, backupd: 8077 },
      paths: {
        boot: `${work}/boot.img`,
        roots: { a: `${work}/root-a.img`, b: `${work}/root-b.img` },
        mbr: `${work}/disk-mbr.img`,
        perm: `${work}/perm`,
        etc: `${work}/etc`,
        run: `${work}/run`,
      },
      bootedAtMs: Date.now(),
    };
    const service = unit.start(process.execPath, [repoPath("dist/router/main.js"), "service", "mdns"], {
      env: { ...process.env, RTR7_SERVICE_CONFIG: JSON.stringify(config) },
    });
    await service.waitForLine(/announced unit-mdns-test/, 15_000);

    const isUnit = (record: AvahiRecord): boolean =>
      record.name === config.hostname && record.type === "_rtr7._tcp";
    let resolved: AvahiRecord | undefined;
    for (let attempt = 0; attempt < 10 && !resolved; attempt++) {
      resolved = (await avahi.browse("_rtr7._tcp", 15_000)).find(
        (record) => record.event === "=" && isUnit(record),
      );
      if (!resolved) await delay(500);
    }
    assert.ok(resolved, `avahi never resolved the announcement; avahi-daemon said:\n${avahi.daemonOutput()}`);
    assert.equal(resolved.interfaceName, "eth0");
    assert.equal(resolved.hostname, "unit-mdns-test.local");
    assert.equal(resolved.address, unitAddress);
    assert.equal(resolved.port, config.ports.update);
    assert.deepEqual(resolved.txt, {
      hostname: config.hostname,
      version: config.version,
      slot: config.slot,
      model: config.model,
    });

    // A browser that is running when the unit stops sees the removal...
    const watch = avahi.watch("_rtr7._tcp");
    t.after(() => watch.stop());
    await watch.waitFor((record) => record.event === "=" && isUnit(record), 15_000);
    await service.stop();
    assert.equal(
      await service.exited(1000),
      0,
      `the mdns service should exit 0 on SIGTERM:\n${service.output()}`,
    );
    assert.match(service.output(), /announcement withdrawn/);
    await watch.waitFor((record) => record.event === "-" && isUnit(record), 10_000);

    // ...and a browse afterwards no longer lists it.
    const after = await avahi.browse("_rtr7._tcp", 15_000);
    assert.deepEqual(
      after.filter(isUnit),
      [],
      `still listed after withdrawal: ${JSON.stringify(after.filter(isUnit))}`,
    );
  },
);
