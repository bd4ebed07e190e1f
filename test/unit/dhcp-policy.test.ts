// The PXE policy, fed with real captured requests (iPXE, busybox udhcpc) and
// variants of them: whom it answers, with which boot file, when it locks to
// one MAC, and where replies go. The clock is injected; no sockets.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  bootFileName,
  leaseTime,
  messageType,
  optionData,
  requestedAddress,
  serverIdentifier,
  subnetMask,
  vendorClass,
} from "../../server/dhcp/options.js";
import { decode, encode, type DhcpPacket } from "../../server/dhcp/packet.js";
import {
  decide,
  initialPolicyState,
  type Decision,
  type PolicyRequest,
  type PxePolicyConfig,
  type PxePolicyState,
} from "../../server/dhcp/pxe-policy.js";
import { repoPath } from "../helpers/paths.js";

const server = "10.99.0.1";
const offer = "10.99.0.42";
const bootFiles = new Map([
  [0, "pxelinux.0"],
  [7, "syslinux.efi"],
  [9, "syslinux.efi"],
]);
const config: PxePolicyConfig = {
  serverAddress: server,
  netmask: "255.255.255.0",
  offerAddress: offer,
  bootFileFor: (arch) => bootFiles.get(arch),
};
const now = 1_700_000_000_000;

function capture(name: string): DhcpPacket {
  return decode(readFileSync(repoPath(`test/fixtures/dhcp/${name}.bin`)));
}

/** A captured packet with options replaced (undefined removes one) and fields changed. */
function variant(
  packet: DhcpPacket,
  options: Record<number, Buffer | string | undefined>,
  fields: Partial<DhcpPacket> = {},
): DhcpPacket {
  const changed = new Set(Object.keys(options).map(Number));
  const kept = packet.options.filter((option) => !changed.has(option.code));
  const added = Object.entries(options).flatMap(([code, value]) =>
    value === undefined
      ? []
      : [{ code: Number(code), data: typeof value === "string" ? Buffer.from(value) : value }],
  );
  return { ...packet, ...fields, options: [...kept, ...added] };
}

const ip = (address: string) => Buffer.from(address.split(".").map(Number));
const arch = (value: number) => Buffer.from([value >> 8, value & 0xff]);

const ipxeDiscover = capture("ipxe-bios-discover");
const ipxeRequest = variant(capture("ipxe-bios-request"), { 50: ip(offer) });
const ipxeMac = ipxeDiscover.chaddr;
const plainDiscover = capture("udhcpc-plain-discover");
const plainRequest = variant(capture("udhcpc-plain-request"), { 50: ip(offer) });
const udhcpcMac = plainDiscover.chaddr;
const otherMac = "52:54:00:99:99:99";

function ask(packet: DhcpPacket, state: PxePolicyState = {}, extra: Partial<PolicyRequest> = {}): Decision {
  return decide(
    config,
    state,
    { packet, from: { address: "0.0.0.0", port: 68 }, via: "dhcp", ...extra },
    now,
  );
}

function replyOf(decision: Decision): DhcpPacket {
  assert.ok(decision.reply, `expected a reply, got ${decision.outcome}: ${decision.summary}`);
  return decision.reply.packet;
}

test("iPXE's DISCOVER gets an OFFER with pxelinux.0, the server, the mask and a 2 h lease", () => {
  const decision = ask(ipxeDiscover);
  assert.equal(decision.outcome, "offer");
  const reply = replyOf(decision);
  assert.equal(messageType(reply), 2);
  assert.equal(reply.op, 2);
  assert.equal(reply.xid, ipxeDiscover.xid);
  assert.equal(reply.chaddr, ipxeMac);
  assert.equal(reply.yiaddr, offer);
  assert.equal(reply.siaddr, server);
  assert.equal(reply.file, "pxelinux.0");
  assert.equal(bootFileName(reply), "pxelinux.0");
  assert.equal(serverIdentifier(reply), server);
  assert.equal(subnetMask(reply), "255.255.255.0");
  assert.equal(leaseTime(reply), 7200);
  assert.deepEqual(decision.reply?.to, { address: "255.255.255.255", port: 68 });
  assert.equal(decision.state.lockedMac, undefined, "an OFFER does not lock");
  assert.match(decision.summary, /DISCOVER → OFFER 10\.99\.0\.42 \(pxelinux\.0, iPXE\)/);
});

test("the reply survives the codec and is padded to 300 bytes", () => {
  const bytes = encode(replyOf(ask(ipxeDiscover)));
  assert.equal(bytes.length, 300);
  assert.equal(decode(bytes).file, "pxelinux.0");
});

test("option 93: 0 gets pxelinux.0, 7 and 9 get syslinux.efi, others no answer", () => {
  for (const [value, file] of [
    [0, "pxelinux.0"],
    [7, "syslinux.efi"],
    [9, "syslinux.efi"],
  ] as const) {
    assert.equal(replyOf(ask(variant(ipxeDiscover, { 93: arch(value) }))).file, file, `arch ${value}`);
  }
  const unknown = ask(variant(ipxeDiscover, { 93: arch(11) }));
  assert.equal(unknown.outcome, "ignore");
  assert.equal(unknown.reply, undefined);
  assert.equal(unknown.quiet, false, "an unbootable PXE client is worth a log line");
  assert.match(unknown.summary, /unknown client architecture 11/);
});

test("without option 93 the architecture comes from option 60 (udhcpc -V PXEClient:Arch:...)", () => {
  assert.equal(replyOf(ask(capture("udhcpc-pxe-bios-discover"))).file, "pxelinux.0");
  assert.equal(replyOf(ask(capture("udhcpc-pxe-efi-discover"))).file, "syslinux.efi");
  const none = ask(variant(ipxeDiscover, { 93: undefined, 60: "PXEClient" }));
  assert.equal(none.outcome, "ignore");
  assert.match(none.summary, /without an architecture/);
});

test("before the lock a non-PXE client never gets an answer", () => {
  assert.equal(vendorClass(plainDiscover), "udhcp 1.35.0");
  for (const packet of [plainDiscover, plainRequest, variant(ipxeDiscover, { 60: undefined })]) {
    const decision = ask(packet);
    assert.equal(decision.outcome, "ignore");
    assert.equal(decision.reply, undefined);
    assert.deepEqual(decision.state, {});
    assert.match(decision.summary, /not a PXE client/);
  }
});

test("the first MAC that gets an ACK is locked, and then served whatever its vendor class", () => {
  const offered = ask(ipxeDiscover);
  const acked = ask(ipxeRequest, offered.state);
  assert.equal(acked.outcome, "ack");
  assert.equal(acked.lockedNow, true);
  assert.deepEqual(acked.state, { lockedMac: ipxeMac, lockedAt: now });
  const reply = replyOf(acked);
  assert.equal(messageType(reply), 5);
  assert.equal(reply.yiaddr, offer);
  assert.equal(reply.file, "pxelinux.0");

  // The recovery initramfs's udhcpc on the same MAC: no PXE, no boot file, same address.
  const initramfs = { ...plainDiscover, chaddr: ipxeMac };
  const plainOffer = ask(initramfs, acked.state);
  assert.equal(plainOffer.outcome, "offer");
  assert.equal(replyOf(plainOffer).yiaddr, offer);
  assert.equal(replyOf(plainOffer).file, "");
  assert.equal(bootFileName(replyOf(plainOffer)), undefined);
  const plainAck = ask({ ...plainRequest, chaddr: ipxeMac }, acked.state);
  assert.equal(plainAck.outcome, "ack");
  assert.equal(plainAck.lockedNow, false);
  assert.equal(plainAck.state, acked.state);
});

test("after the lock another MAC gets no OFFER, and a NAK for a REQUEST naming us", () => {
  const locked = initialPolicyState(ipxeMac);
  const discover = ask({ ...ipxeDiscover, chaddr: otherMac }, locked);
  assert.equal(discover.outcome, "ignore");
  assert.equal(discover.reply, undefined);
  assert.match(discover.summary, /locked to 52:54:00:12:34:56/);

  const request = ask({ ...ipxeRequest, chaddr: otherMac }, locked);
  assert.equal(request.outcome, "nak");
  const nak = replyOf(request);
  assert.equal(messageType(nak), 6);
  assert.equal(serverIdentifier(nak), server);
  assert.equal(nak.yiaddr, "0.0.0.0");
  assert.deepEqual(request.reply?.to, { address: "255.255.255.255", port: 68 });
  assert.equal(request.state, locked);

  const elsewhere = ask({ ...ipxeRequest, chaddr: otherMac, options: [] }, locked);
  assert.equal(elsewhere.outcome, "ignore", "BOOTP without option 53");
});

test("a REQUEST naming another server is ignored, quietly, and locks nothing", () => {
  const decision = ask(variant(ipxeRequest, { 54: ip("10.99.0.2") }));
  assert.equal(decision.outcome, "ignore");
  assert.equal(decision.reply, undefined);
  assert.equal(decision.quiet, true);
  assert.deepEqual(decision.state, {});
  assert.match(decision.summary, /names server 10\.99\.0\.2/);
});

test("--mac locks from the start: that MAC is served without PXE, others are not", () => {
  const state = initialPolicyState(udhcpcMac.toUpperCase().replace(/:/g, "-"));
  assert.equal(state.lockedMac, udhcpcMac);
  assert.equal(ask(plainDiscover, state).outcome, "offer");
  const ack = ask(plainRequest, state);
  assert.equal(ack.outcome, "ack");
  assert.equal(ack.lockedNow, false);
  assert.equal(ask(ipxeDiscover, state).outcome, "ignore");
});

test("the subnet mask is the interface's netmask, not a /24", () => {
  const narrow = {
    ...config,
    netmask: "255.255.255.192",
    serverAddress: "10.99.0.1",
    offerAddress: "10.99.0.42",
  };
  const decision = decide(
    narrow,
    {},
    { packet: ipxeDiscover, from: { address: "0.0.0.0", port: 68 }, via: "dhcp" },
    now,
  );
  assert.equal(subnetMask(replyOf(decision)), "255.255.255.192");
});

test("a REQUEST without option 54 is ours when it asks for our address, else NAKed", () => {
  const initReboot = variant(ipxeRequest, { 54: undefined });
  assert.equal(ask(initReboot).outcome, "ack");
  const wrong = ask(variant(initReboot, { 50: ip("10.99.0.77") }));
  assert.equal(wrong.outcome, "nak");
  assert.match(wrong.summary, /asks for 10\.99\.0\.77, we hand out 10\.99\.0\.42/);
  const wrongSelecting = ask(variant(ipxeRequest, { 50: ip("10.99.0.77") }));
  assert.equal(wrongSelecting.outcome, "nak");
});

test("replies go to the relay, to ciaddr when the client has one, else broadcast (RFC 2131 4.1)", () => {
  const relayed = ask({ ...ipxeDiscover, giaddr: "10.98.0.1" });
  assert.deepEqual(relayed.reply?.to, { address: "10.98.0.1", port: 67 });
  assert.equal(replyOf(relayed).giaddr, "10.98.0.1");

  const renewing = variant(ipxeRequest, { 50: undefined, 54: undefined }, { ciaddr: offer });
  const renewed = ask(renewing, initialPolicyState(ipxeMac));
  assert.equal(renewed.outcome, "ack");
  assert.deepEqual(renewed.reply?.to, { address: offer, port: 68 });
  assert.equal(replyOf(renewed).ciaddr, offer);

  const broadcastFlag = ask({ ...ipxeDiscover, flags: 0x8000 });
  assert.equal(replyOf(broadcastFlag).flags, 0x8000, "the reply keeps the client's broadcast flag");

  const relayedNak = ask(
    { ...ipxeRequest, chaddr: otherMac, giaddr: "10.98.0.1" },
    initialPolicyState(ipxeMac),
  );
  assert.deepEqual(relayedNak.reply?.to, { address: "10.98.0.1", port: 67 });
  assert.equal(replyOf(relayedNak).flags & 0x8000, 0x8000, "a relayed NAK asks the relay to broadcast");
});

test("INFORM from the locked MAC gets an ACK without an address or lease; others are ignored", () => {
  const inform = variant(plainDiscover, { 53: Buffer.from([8]) }, { ciaddr: "10.99.0.42", chaddr: ipxeMac });
  const decision = ask(inform, initialPolicyState(ipxeMac));
  assert.equal(decision.outcome, "ack");
  const reply = replyOf(decision);
  assert.equal(reply.yiaddr, "0.0.0.0");
  assert.equal(leaseTime(reply), undefined);
  assert.deepEqual(decision.reply?.to, { address: "10.99.0.42", port: 68 });
  assert.equal(ask({ ...inform, chaddr: otherMac }, initialPolicyState(ipxeMac)).outcome, "ignore");
  assert.equal(ask(variant(ipxeDiscover, { 53: Buffer.from([8]) })).outcome, "ignore");
});

test("RELEASE and DECLINE get no reply and keep the lock", () => {
  const locked = initialPolicyState(ipxeMac);
  const release = ask(variant(ipxeRequest, { 53: Buffer.from([7]) }, { ciaddr: offer }), locked);
  assert.equal(release.outcome, "release");
  assert.equal(release.reply, undefined);
  assert.equal(release.state, locked);
  const decline = ask(variant(ipxeRequest, { 53: Buffer.from([4]) }), locked);
  assert.equal(decline.outcome, "decline");
  assert.match(decline.summary, /DECLINE of 10\.99\.0\.42/);
});

test("the boot server port answers a PXE REQUEST with a unicast ACK carrying the boot file", () => {
  const request = variant(ipxeRequest, { 50: undefined, 54: undefined }, { ciaddr: offer });
  const from = { address: offer, port: 4011 };
  const decision = ask(request, {}, { via: "boot-server", from });
  assert.equal(decision.outcome, "ack");
  assert.deepEqual(decision.reply?.to, from);
  const reply = replyOf(decision);
  assert.equal(reply.file, "pxelinux.0");
  assert.equal(reply.yiaddr, "0.0.0.0");
  assert.equal(vendorClass(reply), "PXEClient");
  assert.ok(optionData(reply, 97)?.equals(optionData(request, 97) ?? Buffer.alloc(1)));
  assert.equal(decision.lockedNow, false);
  assert.equal(ask(plainRequest, {}, { via: "boot-server", from }).outcome, "ignore");
});

test("the client's own requested address is never trusted: the OFFER is always offerAddress", () => {
  const decision = ask(variant(ipxeDiscover, { 50: ip("10.99.0.200") }));
  assert.equal(replyOf(decision).yiaddr, offer);
  assert.equal(requestedAddress(replyOf(decision)), undefined);
});
