// The TFTP server on loopback, driven packet by packet by a small raw client
// written here (so each test controls exactly what is sent: options, ACKs,
// duplicates, junk), plus the tftp package's own client for windowsize.
// Covers negotiation, exact-name lookups, refusals, malformed input and
// close(); real clients (curl, tftp-hpa) are in the integration test.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { createSocket, type Socket } from "node:dgram";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { isRtr7Error } from "../../lib/errors.js";
import { createLogger } from "../../lib/log.js";
import { FileMap, fileFromBuffer } from "../../lib/served-files.js";
import { startTftpServer, type TftpServerOptions, type TftpTransfer } from "../../server/tftp/server.js";

const host = "127.0.0.1";
const files = {
  "pxelinux.0": randomBytes(3000),
  "pxelinux.cfg/default": Buffer.from("DEFAULT rtr7\n"),
  "exact.bin": randomBytes(1468 * 512 * 2),
  "big.bin": randomBytes(200_000),
  "empty.bin": Buffer.alloc(0),
};

interface Packet {
  opcode: number;
  block: number;
  data: Buffer;
  code: number;
  message: string;
  options: Record<string, string>;
}

function parse(packet: Buffer): Packet {
  const opcode = packet.readUInt16BE(0);
  const second = packet.length >= 4 ? packet.readUInt16BE(2) : 0;
  const strings = packet.toString("latin1", opcode === 6 ? 2 : 4).split("\0");
  const options: Record<string, string> = {};
  for (let index = 0; index + 1 < strings.length; index += 2)
    options[strings[index] ?? ""] = strings[index + 1] ?? "";
  return {
    opcode,
    block: second,
    data: packet.subarray(4),
    code: second,
    message: opcode === 5 ? (strings[0] ?? "") : "",
    options,
  };
}

function request(opcode: 1 | 2, name: string, options: Record<string, string> = {}, mode = "octet"): Buffer {
  const fields = [name, mode, ...Object.entries(options).flat()];
  return Buffer.concat([
    Buffer.from([0, opcode]),
    Buffer.from(fields.map((field) => `${field}\0`).join(""), "latin1"),
  ]);
}

function ack(block: number): Buffer {
  return Buffer.from([0, 4, block >> 8, block & 0xff]);
}

/** A UDP socket that queues what it receives, with bounded waits. */
class RawClient {
  private readonly queue: { packet: Buffer; port: number }[] = [];
  private waiter: (() => void) | undefined;

  private constructor(readonly socket: Socket) {
    socket.on("message", (packet, remote) => {
      this.queue.push({ packet, port: remote.port });
      this.waiter?.();
    });
  }

  static async open(t: TestContext, address = host): Promise<RawClient> {
    const socket = createSocket("udp4");
    await new Promise<void>((resolve) => socket.bind(0, address, resolve));
    t.after(() => socket.close());
    return new RawClient(socket);
  }

  send(packet: Buffer, port: number): void {
    this.socket.send(packet, port, host);
  }

  async next(timeoutMs = 3000): Promise<Packet & { port: number }> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("no packet within the time limit");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const { packet, port } = this.queue.shift() as { packet: Buffer; port: number };
    return { ...parse(packet), port };
  }

  /** Whether a packet arrives within the time (it stays queued). */
  async quietFor(ms: number): Promise<boolean> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return this.queue.length === 0;
  }
}

interface Fetched {
  oack: Record<string, string> | undefined;
  data: Buffer;
  blocks: number[];
}

/** Reads a file lock-step; `duplicateAcks` sends every ACK twice. */
async function fetch(
  client: RawClient,
  port: number,
  name: string,
  options: Record<string, string> = {},
  duplicateAcks = false,
): Promise<Fetched> {
  client.send(request(1, name, options), port);
  const chunks: Buffer[] = [];
  const blocks: number[] = [];
  let oack: Record<string, string> | undefined;
  let first = await client.next();
  if (first.opcode === 6) {
    oack = first.options;
    client.send(ack(0), first.port);
    first = await client.next();
  }
  for (let packet = first; ; packet = await client.next()) {
    if (packet.opcode === 5) throw new Error(`TFTP error ${packet.code}: ${packet.message}`);
    assert.equal(packet.opcode, 3);
    blocks.push(packet.block);
    chunks.push(packet.data);
    client.send(ack(packet.block), packet.port);
    if (duplicateAcks) client.send(ack(packet.block), packet.port);
    if (packet.data.length < Number(oack?.blksize ?? 512)) break;
  }
  return { oack, data: Buffer.concat(chunks), blocks };
}

interface Started {
  port: number;
  lines: Record<string, unknown>[];
  transfers: TftpTransfer[];
  server: Awaited<ReturnType<typeof startTftpServer>>;
}

let nextPort = 20_000 + (process.pid % 20_000);

async function start(t: TestContext, overrides: Partial<TftpServerOptions> = {}): Promise<Started> {
  const lines: Record<string, unknown>[] = [];
  const transfers: TftpTransfer[] = [];
  const log = createLogger({
    json: true,
    level: "debug",
    stream: { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) },
  });
  const map = new FileMap(Object.entries(files).map(([name, bytes]) => fileFromBuffer(name, bytes)));
  for (let attempt = 0; ; attempt += 1) {
    const port = (nextPort += 1);
    try {
      const server = await startTftpServer({
        address: host,
        port,
        files: map,
        log,
        onTransfer: (transfer) => transfers.push(transfer),
        ...overrides,
      });
      t.after(() => server.close());
      return { port, lines, transfers, server };
    } catch (error) {
      if (!isRtr7Error(error, "RTR7_ERR_LISTEN") || attempt > 20) throw error;
    }
  }
}

test("serves a file byte-exact, negotiating blksize, tsize and timeout", async (t) => {
  const { port, transfers, server, lines } = await start(t);
  const client = await RawClient.open(t);
  const got = await fetch(client, port, "pxelinux.0", { blksize: "1468", tsize: "0", timeout: "2" });
  assert.deepEqual(got.oack, { blksize: "1468", tsize: "3000", timeout: "2" });
  assert.ok(got.data.equals(files["pxelinux.0"]));
  assert.deepEqual(got.blocks, [1, 2, 3]);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(transfers.length, 1);
  assert.equal(transfers[0]?.name, "pxelinux.0");
  assert.equal(transfers[0]?.bytes, 3000);
  assert.equal(server.bytesServed(), 3000);
  assert.ok(
    lines.some((line) => line.event === "tftp-sent" && line.subsystem === "tftp" && line.blksize === 1468),
  );
});

test("option names are case-insensitive, and a too large blksize is lowered to the maximum", async (t) => {
  const { port } = await start(t);
  const client = await RawClient.open(t);
  const got = await fetch(client, port, "big.bin", { BLKSIZE: "9000", TSize: "0" });
  assert.deepEqual(got.oack, { blksize: "1468", tsize: "200000" });
  assert.ok(got.data.equals(files["big.bin"]));
});

test("without options: 512-byte blocks, and a file that fills its last block ends with an empty one", async (t) => {
  const { port } = await start(t);
  const client = await RawClient.open(t);
  const got = await fetch(client, port, "exact.bin", { blksize: "1468" });
  assert.ok(got.data.equals(files["exact.bin"]));
  assert.equal(got.blocks.length, 1024 + 1);
  const plain = await fetch(client, port, "exact.bin");
  assert.equal(plain.oack, undefined);
  assert.equal(plain.blocks.length, (1468 * 1024) / 512 + 1);
  assert.ok(plain.data.equals(files["exact.bin"]));
});

test("an empty file is one empty block, with tsize 0", async (t) => {
  const { port } = await start(t);
  const client = await RawClient.open(t);
  const got = await fetch(client, port, "empty.bin", { tsize: "0" });
  assert.deepEqual(got.oack, { tsize: "0" });
  assert.deepEqual(got.blocks, [1]);
  assert.equal(got.data.length, 0);
  const plain = await fetch(client, port, "empty.bin");
  assert.deepEqual(plain.blocks, [1]);
});

test("windowsize (RFC 7440) is granted up to the maximum, and the package's own client reads with it", async (t) => {
  const { port } = await start(t, { maxWindowSize: 8 });
  const client = await RawClient.open(t);
  client.send(request(1, "big.bin", { windowsize: "64" }), port);
  const oack = await client.next();
  assert.deepEqual(oack.options, { windowsize: "8" });
  client.send(Buffer.from([0, 5, 0, 0, 0]), oack.port);

  const require = createRequire(import.meta.url);
  const tftp = require("tftp") as {
    createClient(options: object): { createGetStream(remote: string): NodeJS.ReadableStream };
  };
  const packageClient = tftp.createClient({ host, port, windowSize: 8, blockSize: 1468 });
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    packageClient
      .createGetStream("big.bin")
      .on("data", (chunk: Buffer) => chunks.push(chunk))
      .on("error", reject)
      .on("end", resolve);
  });
  assert.ok(Buffer.concat(chunks).equals(files["big.bin"]));
});

test("names not in the map get error 1, File not found", async (t) => {
  const { port, lines } = await start(t);
  const client = await RawClient.open(t);
  for (const name of [
    "missing.bin",
    "../etc/passwd",
    "/etc/passwd",
    "/pxelinux.0",
    "./pxelinux.0",
    "pxelinux.cfg/../pxelinux.0",
    "pxelinux.cfg/01-52-54-00-12-34-56",
    "pxelinux.cfg/C0A80001",
    "pxelinux.cfg",
    "",
  ]) {
    client.send(request(1, name, { tsize: "0" }), port);
    const reply = await client.next();
    assert.equal(reply.opcode, 5, name);
    assert.equal(reply.code, 1, name);
    assert.equal(reply.message, "File not found", name);
  }
  assert.ok(lines.some((line) => line.event === "tftp-not-found" && line.file === "../etc/passwd"));
});

test("a write request gets error 2, Access violation", async (t) => {
  const { port, lines } = await start(t);
  const client = await RawClient.open(t);
  for (const name of ["upload.bin", "pxelinux.0"]) {
    client.send(request(2, name, { tsize: "10" }), port);
    const reply = await client.next();
    assert.deepEqual([reply.opcode, reply.code, reply.message], [5, 2, "Access violation"]);
  }
  assert.ok(lines.some((line) => line.event === "tftp-write-refused" && line.file === "upload.bin"));
});

test("malformed requests are answered with an error, logged and skipped", async (t) => {
  const { port, lines } = await start(t);
  const client = await RawClient.open(t);
  const junk = [
    Buffer.alloc(0),
    Buffer.from([0]),
    Buffer.from([0, 1, 0x61]),
    Buffer.alloc(600, 1),
    Buffer.from([0, 9, 0x61, 0, 0x6f, 0x63, 0x74, 0x65, 0x74, 0]),
    Buffer.from([0, 4, 0, 1, 0, 0, 0, 0, 0, 0]),
    Buffer.from("\0\x01pxelinux.0 without any NUL", "latin1"),
    request(1, "pxelinux.0", {}, "mode"),
    request(1, "pxelinux.0", { blksize: "abc" }),
    request(1, "pxelinux.0", { blksize: "4" }),
    Buffer.concat([request(1, "pxelinux.0", { tsize: "0" }), Buffer.from("dangling")]),
  ];
  for (const packet of junk) client.send(packet, port);
  const answers = [];
  for (let index = 0; index < junk.length; index += 1) answers.push(await client.next());
  assert.ok(answers.every((answer) => answer.opcode === 5));
  assert.ok(await client.quietFor(100));
  const warnings = lines.filter((line) => line.event === "tftp-bad-packet");
  assert.equal(warnings.length, junk.length);
  assert.ok(warnings.every((line) => line.level === "warn" && line.code === "RTR7_ERR_TFTP_PACKET"));
  const got = await fetch(await RawClient.open(t), port, "pxelinux.0");
  assert.ok(got.data.equals(files["pxelinux.0"]));
});

test("junk inside a transfer ends that transfer only; other addresses cannot disturb it", async (t) => {
  const { port, lines } = await start(t);
  const client = await RawClient.open(t);
  client.send(request(1, "big.bin", { blksize: "1468" }), port);
  const oack = await client.next();
  // A stranger's ACK and ERROR to the transfer port are dropped.
  const stranger = await RawClient.open(t);
  stranger.send(ack(0), oack.port);
  stranger.send(Buffer.from([0, 5, 0, 0, 0x78, 0]), oack.port);
  assert.ok(await stranger.quietFor(100));
  client.send(ack(0), oack.port);
  const first = await client.next();
  assert.deepEqual([first.opcode, first.block], [3, 1]);
  // A packet too short for an opcode from the client itself.
  client.send(Buffer.from([4]), oack.port);
  const reply = await client.next();
  assert.deepEqual([reply.opcode, reply.message], [5, "Malformed TFTP message"]);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok(lines.some((line) => line.event === "tftp-failed" && line.file === "big.bin"));
  const again = await fetch(await RawClient.open(t), port, "big.bin", { blksize: "1468" });
  assert.ok(again.data.equals(files["big.bin"]));
});

test("duplicate ACKs do not make the server send blocks twice (Sorcerer's Apprentice)", async (t) => {
  const { port } = await start(t);
  const client = await RawClient.open(t);
  const got = await fetch(client, port, "big.bin", { blksize: "512" }, true);
  assert.ok(got.data.equals(files["big.bin"]));
  assert.equal(got.blocks.length, new Set(got.blocks).size, "a block came twice");
  assert.ok(await client.quietFor(200), "packets after the last block");
});

test("a port in use is RTR7_ERR_LISTEN naming the address and port", async (t) => {
  const { port } = await start(t);
  await assert.rejects(
    startTftpServer({ address: host, port, files: new FileMap(), log: createLogger({ level: "silent" }) }),
    (error: unknown) => isRtr7Error(error, "RTR7_ERR_LISTEN") && error.message.includes(`${host}:${port}`),
  );
  await assert.rejects(
    startTftpServer({
      address: "not-an-ip",
      port,
      files: new FileMap(),
      log: createLogger({ level: "silent" }),
    }),
    (error: unknown) => isRtr7Error(error, "RTR7_ERR_LISTEN"),
  );
});

test("close() ends a transfer under way with an error to the client; only completed files count", async (t) => {
  const { port, server, transfers } = await start(t, { timeoutMs: 5000 });
  const client = await RawClient.open(t);
  client.send(request(1, "big.bin"), port);
  const first = await client.next();
  assert.equal(first.block, 1);
  await server.close();
  const reply = await client.next();
  assert.deepEqual([reply.opcode, reply.message], [5, "Server shutting down"]);
  assert.equal(server.bytesServed(), 0);
  assert.equal(transfers.length, 0);
});

test("running out of file descriptors fails transfers, not the server", () => {
  const module = (relative: string) => JSON.stringify(fileURLToPath(new URL(relative, import.meta.url)));
  // 40 clients ask at once in a process allowed 40 descriptors: some transfer
  // sockets cannot be bound (EMFILE). That used to be an unhandled "error".
  const script = `
    import dgram from "node:dgram";
    const { startTftpServer } = await import(${module("../../server/tftp/server.js")});
    const { FileMap, fileFromBuffer } = await import(${module("../../lib/served-files.js")});
    const { createLogger } = await import(${module("../../lib/log.js")});
    const files = new FileMap([fileFromBuffer("a.bin", Buffer.alloc(100000))]);
    const log = createLogger({ json: true, level: "warn" });
    const server = await startTftpServer({ address: "127.0.0.1", port: ${nextPort + 5000}, files, log });
    const sockets = [];
    for (let index = 0; index < 40; index += 1) {
      const socket = dgram.createSocket("udp4");
      sockets.push(socket);
      socket.bind(0, "127.0.0.1", () => socket.send(Buffer.from("\\0\\x01a.bin\\0octet\\0", "latin1"), ${nextPort + 5000}, "127.0.0.1"));
    }
    setTimeout(async () => {
      sockets.forEach((socket) => socket.close());
      await server.close();
      console.log("closed cleanly");
    }, 1000);
  `;
  const child = spawnSync(
    "sh",
    ["-c", `ulimit -n 40 && exec "$0" --input-type=module -e "$1"`, process.execPath, script],
    {
      encoding: "utf8",
      timeout: 20_000,
    },
  );
  assert.equal(child.status, 0, child.stderr);
  assert.match(child.stdout, /closed cleanly/);
  assert.match(child.stdout, /EMFILE/, "no transfer hit the limit; the test proves nothing");
});

test("transfers are capped in all and per address: over a cap an RRQ gets an error, within it others are served", async (t) => {
  const { port, lines } = await start(t, { maxTransfers: 3, maxTransfersPerPeer: 2, timeoutMs: 10_000 });
  // Clients that ask and never ACK hold their transfers open.
  const holder = await RawClient.open(t, "127.0.0.1");
  for (let index = 0; index < 2; index += 1) {
    holder.send(request(1, "big.bin"), port);
    assert.equal((await holder.next()).opcode, 3);
  }
  holder.send(request(1, "big.bin"), port);
  const perAddress = await holder.next();
  assert.equal(perAddress.opcode, 5);
  assert.match(perAddress.message, /busy/i);

  const second = await RawClient.open(t, "127.0.0.2");
  second.send(request(1, "big.bin"), port);
  assert.equal((await second.next()).opcode, 3);
  // Three under way: a third address is refused too, though it has none.
  const third = await RawClient.open(t, "127.0.0.3");
  third.send(request(1, "pxelinux.0"), port);
  const overall = await third.next();
  assert.equal(overall.opcode, 5);
  assert.match(overall.message, /busy/i);
  assert.equal(lines.filter((line) => line.event === "tftp-busy").length, 2);
});
