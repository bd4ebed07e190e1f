// The mDNS announcement's inputs (TXT record, the interface address it binds
// to) and the lab's parser of `avahi-browse -p` output, which the mDNS
// integration test relies on.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseAvahiBrowse } from "../../lab/avahi.js";
import { announceAddress, announcementTxt } from "../../router/mdns/announce.js";
import type { ServiceConfig } from "../../router/unit.js";

const config = {
  hostname: "rtr7",
  version: "2026.01.02",
  slot: "a",
  model: "apu2",
  address: "0.0.0.0",
  interfaceName: "lan0",
} as ServiceConfig;

test("announcementTxt carries hostname, version, slot and model", () => {
  assert.deepEqual(announcementTxt(config), {
    hostname: "rtr7",
    version: "2026.01.02",
    slot: "a",
    model: "apu2",
  });
});

test("announceAddress: the listen address, else the named interface's IPv4, else every interface", () => {
  const interfaces = {
    lan0: [
      { address: "fe80::1", family: "IPv6" },
      { address: "10.0.0.1", family: "IPv4" },
    ],
  } as unknown as NodeJS.Dict<import("node:os").NetworkInterfaceInfo[]>;
  assert.equal(announceAddress({ ...config, address: "10.9.9.9" }, interfaces), "10.9.9.9");
  assert.equal(announceAddress(config, interfaces), "10.0.0.1");
  assert.equal(announceAddress({ ...config, interfaceName: "wan0" }, interfaces), undefined);
  assert.equal(announceAddress({ ...config, interfaceName: undefined }, interfaces), undefined);
});

test("parseAvahiBrowse: found, resolved (with TXT) and removed lines; escapes undone", () => {
  const output = [
    "Server version: avahi 0.8; Host name: x.local",
    "+;eth0;IPv4;unit\\0321;_rtr7._tcp;local",
    '=;eth0;IPv4;unit\\0321;_rtr7._tcp;local;unit-1.local;10.82.0.2;80;"model=qemu" "slot=b" "note=a \\"quoted\\" \\\\ value" "flag"',
    "-;eth0;IPv4;unit\\0321;_rtr7._tcp;local",
    "Failed to resolve service",
  ].join("\n");
  const records = parseAvahiBrowse(output);
  assert.deepEqual(
    records.map((record) => [record.event, record.name]),
    [
      ["+", "unit 1"],
      ["=", "unit 1"],
      ["-", "unit 1"],
    ],
  );
  assert.deepEqual(records[1], {
    event: "=",
    interfaceName: "eth0",
    protocol: "IPv4",
    name: "unit 1",
    type: "_rtr7._tcp",
    domain: "local",
    hostname: "unit-1.local",
    address: "10.82.0.2",
    port: 80,
    txt: { model: "qemu", slot: "b", note: 'a "quoted" \\ value', flag: "" },
  });
});
