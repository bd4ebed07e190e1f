// Which hostname a unit takes: /perm/hostname (written by recovery) first,
// then process mode's --hostname, then build.json's (a per-host build), then
// "rtr7"; a file that holds no host name is ignored and said so. A fleet
// release's build.json names no unit. And `rtr7 recover` fills the flags it
// is not given from the unit's inventory entry.
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { withInventoryDefaults } from "../../cli/recover-inputs.js";
import { parseHostnameFile } from "../../lib/wire/unit-hostname.js";
import { readBuildInfo, unitHostname } from "../../router/build-info.js";
import { scratchDir } from "../helpers/scratch.js";

test("/perm/hostname, then the flag, then build.json, then rtr7", async (t) => {
  const dir = await scratchDir(t, "unit-hostname");
  const perm = path.join(dir, "perm");
  const etc = path.join(dir, "etc");
  await mkdir(perm);
  await mkdir(etc);
  await writeFile(path.join(etc, "build.json"), JSON.stringify({ hostname: "built-for", version: "v1" }));
  const perHost = await readBuildInfo(etc);
  assert.equal(perHost.hostname, "built-for");

  assert.deepEqual(await unitHostname(perm, perHost), { hostname: "built-for", source: "build.json" });
  assert.deepEqual(await unitHostname(perm, perHost, "flagged"), { hostname: "flagged", source: "flag" });
  await writeFile(path.join(perm, "hostname"), "shop-3\n");
  assert.deepEqual(await unitHostname(perm, perHost, "flagged"), {
    hostname: "shop-3",
    source: path.join(perm, "hostname"),
  });

  // A fleet release: no hostname in build.json.
  await writeFile(path.join(etc, "build.json"), JSON.stringify({ anyUnit: true, version: "v2" }));
  const fleet = await readBuildInfo(etc);
  assert.equal(fleet.hostname, undefined);
  assert.equal(fleet.anyUnit, true);
  assert.equal((await unitHostname(perm, fleet)).hostname, "shop-3");
  await writeFile(path.join(perm, "hostname"), "not a host name!\n");
  const ignored = await unitHostname(perm, fleet);
  assert.equal(ignored.hostname, "rtr7");
  assert.equal(ignored.source, "default");
  assert.match(ignored.problem ?? "", /holds no host name/);
  assert.equal((await readBuildInfo(path.join(dir, "nowhere"))).version, "unknown");
});

test("the hostname file: its first line, trimmed, if it is a host name", () => {
  assert.equal(parseHostnameFile("shop-1\n"), "shop-1");
  assert.equal(parseHostnameFile("  shop-1  \r\nother\n"), "shop-1");
  assert.equal(parseHostnameFile(""), undefined);
  assert.equal(parseHostnameFile("\nshop-1\n"), undefined);
  assert.equal(parseHostnameFile("shop_1"), undefined);
});

test("rtr7 recover takes --mac, --rebootor, --serial and --disk from the inventory when not given", () => {
  const entry = { mac: "52:54:00:00:00:01", rebootor: "T123", serial: "/dev/ttyUSB3", disk: "sda" };
  assert.deepEqual(withInventoryDefaults({ mac: "52:54:00:00:00:09" }, entry), {
    values: { mac: "52:54:00:00:00:09", rebootor: "T123", serial: "/dev/ttyUSB3", disk: "sda" },
    fromInventory: ["rebootor", "serial", "disk"],
  });
  assert.deepEqual(withInventoryDefaults({ disk: "vda" }, undefined), {
    values: { disk: "vda" },
    fromInventory: [],
  });
});
