// Sends random and mutated DHCP and TFTP packets at a recovery server: run
// as a script inside a test's network namespace (`node fuzz-sender.js
// SERVER COUNT SEED`). Half the packets start from well-formed ones (a PXE
// DISCOVER and REQUEST, a TFTP RRQ with options, ACKs, a WRQ) and are then
// truncated, bit-flipped, extended or spliced; the rest are random bytes.
// Deterministic for a seed, so a failure can be replayed.
import dgram from "node:dgram";

const [serverAddress = "127.0.0.1", countText = "10000", seedText = "1"] = process.argv.slice(2);
const count = Number(countText);
let seed = Number(seedText) >>> 0 || 1;

function random(): number {
  // xorshift32: small, fast, and deterministic for the seed.
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed / 2 ** 32;
}
const below = (n: number): number => Math.floor(random() * n);
const randomBytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => below(256)));

function dhcpPacket(type: number, options: Buffer[]): Buffer {
  const fixed = Buffer.alloc(240);
  fixed[0] = 1;
  fixed[1] = 1;
  fixed[2] = 6;
  fixed.writeUInt32BE(below(2 ** 32), 4);
  randomBytes(6).copy(fixed, 28);
  fixed.writeUInt32BE(0x63825363, 236);
  return Buffer.concat([fixed, Buffer.from([53, 1, type]), ...options, Buffer.from([255])]);
}

const vendor = Buffer.from("PXEClient:Arch:00000:UNDI:002001");
const dhcpSeeds = (): Buffer[] => [
  dhcpPacket(1, [Buffer.from([60, vendor.length]), vendor, Buffer.from([93, 2, 0, 0])]),
  dhcpPacket(3, [
    Buffer.from([60, vendor.length]),
    vendor,
    Buffer.from([93, 2, 0, below(12)]),
    Buffer.from([54, 4, ...serverAddress.split(".").map(Number)]),
    Buffer.from([50, 4, 10, 78, 0, 1]),
  ]),
  dhcpPacket(8, [Buffer.from([77, 4]), Buffer.from("iPXE")]),
];

function tftpRequest(opcode: number, name: string, options: [string, string][]): Buffer {
  const parts = [Buffer.from([0, opcode]), Buffer.from(`${name}\0octet\0`)];
  for (const [key, value] of options) parts.push(Buffer.from(`${key}\0${value}\0`));
  return Buffer.concat(parts);
}

const names = [
  "pxelinux.0",
  "ldlinux.c32",
  "../etc/passwd",
  "/etc/passwd",
  "pxelinux.cfg/default",
  "x".repeat(600),
  "",
];
const optionValues = ["0", "7", "8", "512", "1468", "65464", "65465", "99999999999", "-1", "abc", ""];
const tftpSeeds = (): Buffer[] => [
  tftpRequest(1, names[below(names.length)] as string, [
    ["blksize", optionValues[below(optionValues.length)] as string],
    ["tsize", optionValues[below(optionValues.length)] as string],
    ["timeout", optionValues[below(optionValues.length)] as string],
    ["windowsize", optionValues[below(optionValues.length)] as string],
  ]),
  tftpRequest(2, "upload.bin", [["tsize", "100"]]),
  Buffer.from([0, 4, below(256), below(256)]),
  Buffer.from([0, 5, 0, 1, ...Buffer.from("oops\0")]),
  Buffer.from([0, 6, ...Buffer.from("blksize\x00512\x00")]),
];

function mutate(packet: Buffer): Buffer {
  const copy = Buffer.from(packet);
  switch (below(5)) {
    case 0:
      return copy.subarray(0, below(copy.length + 1));
    case 1:
      for (let flips = 1 + below(8); flips > 0; flips -= 1) {
        const at = below(copy.length);
        copy[at] = (copy[at] ?? 0) ^ (1 << below(8));
      }
      return copy;
    case 2:
      return Buffer.concat([copy, randomBytes(below(1500))]);
    case 3: {
      const at = below(copy.length);
      return Buffer.concat([copy.subarray(0, at), randomBytes(below(64)), copy.subarray(at)]);
    }
    default:
      return copy;
  }
}

const socket = dgram.createSocket("udp4");
socket.bind(() => {
  socket.setBroadcast(true);
  void send();
});

async function send(): Promise<void> {
  const targets: [string, number, () => Buffer[]][] = [
    [serverAddress, 67, dhcpSeeds],
    ["255.255.255.255", 67, dhcpSeeds],
    [serverAddress, 4011, dhcpSeeds],
    [serverAddress, 69, tftpSeeds],
  ];
  for (let index = 0; index < count; index += 1) {
    const [address, port, seeds] = targets[below(targets.length)] as (typeof targets)[number];
    const packet =
      random() < 0.5
        ? randomBytes(below(600))
        : mutate((seeds()[below(seeds().length)] as Buffer) ?? Buffer.alloc(0));
    await new Promise<void>((resolve) => socket.send(packet, port, address, () => resolve()));
    // Pace a little so the kernel's socket buffers are not what is tested.
    if (index % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 2));
  }
  console.log(`sent ${count} packets`);
  socket.close();
}
