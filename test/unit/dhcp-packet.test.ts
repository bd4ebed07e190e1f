// The DHCP codec against real packets captured from iPXE, busybox udhcpc,
// ISC dhclient and dnsmasq (test/fixtures/dhcp/capture.sh): each decodes to
// its golden description and re-encodes byte for byte. Malformed input must
// fail with RTR7_ERR_DHCP_PACKET and a message that says what and where.
// UPDATE_TESTDATA=1 rewrites the golden JSON from the current decoder.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { isRtr7Error } from "../../lib/errors.js";
import { describePacket } from "../../server/dhcp/describe.js";
import {
  bootFileName,
  clientArchitectures,
  clientMachineId,
  messageType,
  networkInterfaceId,
  optionData,
  parameterRequestList,
  requestedAddress,
  serverIdentifier,
  subnetMask,
  userClass,
  vendorClass,
} from "../../server/dhcp/options.js";
import { decode, encode, type DhcpPacket } from "../../server/dhcp/packet.js";
import { repoPath } from "../helpers/paths.js";

const fixtures = repoPath("test/fixtures/dhcp");
const captures = readdirSync(fixtures)
  .filter((name) => name.endsWith(".bin"))
  .map((name) => name.slice(0, -4))
  .sort();

function fixture(name: string): Buffer {
  return readFileSync(`${fixtures}/${name}.bin`);
}

test("there are captures of every client and server", () => {
  for (const prefix of ["ipxe-", "udhcpc-pxe-", "udhcpc-plain-", "dhclient-", "dnsmasq-"]) {
    assert.ok(
      captures.some((name) => name.startsWith(prefix)),
      `no ${prefix}* capture; run test/fixtures/dhcp/capture.sh`,
    );
  }
});

for (const name of captures) {
  void test(`${name}: decodes to its golden description and re-encodes byte for byte`, () => {
    const bytes = fixture(name);
    const packet = decode(bytes);
    const description = JSON.parse(JSON.stringify(describePacket(packet))) as unknown;
    const goldenPath = `${fixtures}/${name}.json`;
    if (process.env.UPDATE_TESTDATA) writeFileSync(goldenPath, JSON.stringify(description, null, 2) + "\n");
    assert.deepEqual(description, JSON.parse(readFileSync(goldenPath, "utf8")));
    assert.ok(encode(packet).equals(bytes), "encode(decode(capture)) differs from the capture");
  });
}

test("iPXE's DISCOVER carries the PXE options", () => {
  const packet = decode(fixture("ipxe-bios-discover"));
  assert.equal(messageType(packet), 1);
  assert.equal(packet.chaddr, "52:54:00:12:34:56");
  assert.match(vendorClass(packet) ?? "", /^PXEClient:Arch:00000:UNDI:002001$/);
  assert.equal(userClass(packet), "iPXE");
  assert.deepEqual(clientArchitectures(packet), [0]);
  assert.deepEqual(networkInterfaceId(packet), { type: 1, major: 2, minor: 1 });
  assert.equal(clientMachineId(packet)?.type, 0);
  assert.ok(parameterRequestList(packet)?.includes(67));
});

test("iPXE's REQUEST names the server and the address it was offered", () => {
  const packet = decode(fixture("ipxe-bios-request"));
  assert.equal(messageType(packet), 3);
  assert.equal(serverIdentifier(packet), "10.99.0.1");
  assert.match(requestedAddress(packet) ?? "", /^10\.99\.0\.\d+$/);
});

test("dnsmasq's ACK decodes with its server-side options", () => {
  const packet = decode(fixture("dnsmasq-ack-ipxe"));
  assert.equal(packet.op, 2);
  assert.equal(messageType(packet), 5);
  assert.equal(packet.siaddr, "10.99.0.1");
  assert.equal(subnetMask(packet), "255.255.255.0");
  assert.equal(bootFileName(packet), "pxelinux.0");
});

function header(overrides: { op?: number; hlen?: number; cookie?: number } = {}): Buffer {
  const bytes = Buffer.alloc(240);
  bytes.writeUInt8(overrides.op ?? 1, 0);
  bytes.writeUInt8(1, 1);
  bytes.writeUInt8(overrides.hlen ?? 6, 2);
  bytes.writeUInt32BE(0x12345678, 4);
  Buffer.from([0x52, 0x54, 0, 0x12, 0x34, 0x56]).copy(bytes, 28);
  bytes.writeUInt32BE(overrides.cookie ?? 0x63825363, 236);
  return bytes;
}

function withOptions(...options: number[]): Buffer {
  return Buffer.concat([header(), Buffer.from(options)]);
}

const malformed: [string, Buffer, RegExp][] = [
  ["an empty datagram", Buffer.alloc(0), /too short: 0 bytes, want at least 240/],
  ["a truncated header", fixture("ipxe-bios-discover").subarray(0, 100), /too short: 100 bytes/],
  ["op 7", Buffer.concat([header({ op: 7 }), Buffer.from([255])]), /op at offset 0: got 7, want 1 .* or 2/],
  [
    "hlen 17",
    Buffer.concat([header({ hlen: 17 }), Buffer.from([255])]),
    /hlen at offset 2: got 17, want at most 16/,
  ],
  [
    "a bad magic cookie",
    Buffer.concat([header({ cookie: 0x01020304 }), Buffer.from([255])]),
    /magic cookie at offset 236: got 0x01020304, want 0x63825363/,
  ],
  ["no end option", withOptions(53, 1, 1), /without an end option \(255\)/],
  ["an option cut before its length", withOptions(53, 1, 1, 60), /option 60 at offset 243: no length byte/],
  [
    "an option overflowing the packet",
    withOptions(53, 1, 1, 60, 50, 0x50, 0x58, 255),
    /option 60 at offset 243: length 50 overflows the options field, which ends at offset 248 \(3 bytes left\)/,
  ],
  ["a two-byte message type", withOptions(53, 2, 1, 1, 255), /option 53 \(message type\): length 2, want 1/],
  [
    "a three-byte server identifier",
    withOptions(53, 1, 3, 54, 3, 10, 0, 1, 255),
    /option 54 .*length 3, want 4/,
  ],
  ["an odd-length architecture list", withOptions(53, 1, 1, 93, 3, 0, 0, 7, 255), /option 93 .*length 3/],
  [
    "overload value 4",
    withOptions(53, 1, 1, 52, 1, 4, 255),
    /option 52 \(overload\) at offset 243: got 0x04, want 1, 2 or 3/,
  ],
];

for (const [what, bytes, message] of malformed) {
  void test(`decode rejects ${what} with RTR7_ERR_DHCP_PACKET`, () => {
    assert.throws(
      () => decode(bytes),
      (error: unknown) => {
        assert.ok(
          isRtr7Error(error, "RTR7_ERR_DHCP_PACKET"),
          `not an RTR7_ERR_DHCP_PACKET: ${String(error)}`,
        );
        assert.match(error.message, message);
        return true;
      },
    );
  });
}

test("option overload: options in the file field are decoded after the options field", () => {
  const bytes = withOptions(53, 1, 1, 52, 1, 1, 255);
  Buffer.from([60, 9, ...Buffer.from("PXEClient"), 255]).copy(bytes, 108);
  const packet = decode(bytes);
  assert.equal(packet.file, "");
  assert.equal(vendorClass(packet), "PXEClient");
  assert.deepEqual(
    packet.options.map((option) => option.code),
    [53, 60],
  );
});

test("option overload: an option overflowing the sname field is rejected", () => {
  const bytes = withOptions(53, 1, 1, 52, 1, 2, 255);
  Buffer.from([60, 100]).copy(bytes, 44);
  assert.throws(() => decode(bytes), /option 60 at offset 44: length 100 overflows the sname field/);
});

const reply: DhcpPacket = {
  op: 2,
  htype: 1,
  hlen: 6,
  hops: 0,
  xid: 0xdeadbeef,
  secs: 0,
  flags: 0x8000,
  ciaddr: "0.0.0.0",
  yiaddr: "10.99.0.42",
  siaddr: "10.99.0.1",
  giaddr: "0.0.0.0",
  chaddr: "52:54:00:12:34:56",
  sname: "",
  file: "pxelinux.0",
  options: [
    { code: 53, data: Buffer.from([2]) },
    { code: 54, data: Buffer.from([10, 99, 0, 1]) },
  ],
};

test("encode pads to 300 bytes and ends the options with 255", () => {
  const bytes = encode(reply);
  assert.equal(bytes.length, 300);
  assert.deepEqual([...bytes.subarray(240, 250)], [53, 1, 2, 54, 4, 10, 99, 0, 1, 255]);
  const again = decode(bytes);
  assert.deepEqual({ ...again, padding: undefined }, { ...reply, padding: undefined });
});

test("encode splits a value longer than 255 bytes into several instances (RFC 3396)", () => {
  const long = Buffer.alloc(300, 0x41);
  const bytes = encode({ ...reply, options: [{ code: 43, data: long }] });
  const packet = decode(bytes);
  assert.deepEqual(
    packet.options.map((option) => option.data.length),
    [255, 45],
  );
  assert.ok(optionData(packet, 43)?.equals(long));
});

test("encode refuses what it cannot put on the wire", () => {
  const cases: [Partial<DhcpPacket>, RegExp][] = [
    [{ yiaddr: "10.99.0.256" }, /yiaddr: got "10.99.0.256", want a dotted IPv4 address/],
    [{ file: "x".repeat(129) }, /file .*129 bytes, want at most 128/],
    [{ chaddr: "not a mac" }, /hardware address "not a mac"/],
    [{ options: [{ code: 255, data: Buffer.alloc(0) }] }, /option code 255: want 1..254/],
    [{ xid: -1 }, /encode DHCP packet/],
  ];
  for (const [change, message] of cases) {
    assert.throws(
      () => encode({ ...reply, ...change }),
      (error: unknown) => isRtr7Error(error, "RTR7_ERR_DHCP_PACKET") && message.test(error.message),
      message.source,
    );
  }
});

test("mutated captures either decode (and re-encode) or fail with RTR7_ERR_DHCP_PACKET, nothing else", () => {
  let seed = 0x2545f491;
  const random = (below: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % below;
  };
  for (const name of captures) {
    const original = fixture(name);
    for (let round = 0; round < 300; round += 1) {
      const bytes = Buffer.from(original.subarray(0, original.length - random(40)));
      for (let flips = 1 + random(4); flips > 0; flips -= 1) bytes[random(bytes.length)] = random(256);
      let packet: DhcpPacket;
      try {
        packet = decode(bytes);
      } catch (error) {
        assert.ok(isRtr7Error(error, "RTR7_ERR_DHCP_PACKET"), `${name} round ${round}: ${String(error)}`);
        continue;
      }
      assert.deepEqual(decode(encode(packet)).options, packet.options, `${name} round ${round}`);
    }
  }
});
