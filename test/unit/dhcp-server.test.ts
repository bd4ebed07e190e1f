// The DHCP server's sockets on loopback with unprivileged ports (no root):
// bind failures become RTR7_ERR_LISTEN, a malformed packet is logged with its
// sender and skipped while serving goes on, the boot server port answers by
// unicast, and close() is clean. Replies are unicast (the client has a
// ciaddr), so nothing is broadcast from here.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createSocket, type Socket } from "node:dgram";
import { once } from "node:events";
import { isRtr7Error } from "../../lib/errors.js";
import { createLogger } from "../../lib/log.js";
import { bootFileName, messageType, option } from "../../server/dhcp/options.js";
import { decode, encode, type DhcpPacket } from "../../server/dhcp/packet.js";
import { startDhcpServer, type DhcpServerOptions } from "../../server/dhcp/server.js";

const unitMac = "52:54:00:12:34:56";

async function freePort(): Promise<number> {
  const socket = createSocket("udp4");
  socket.bind(0, "127.0.0.1");
  await once(socket, "listening");
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

/** The unit's socket, on the address it was given (ciaddr), where unicast replies go. */
async function clientSocket(t: TestContext): Promise<Socket> {
  const socket = createSocket("udp4");
  socket.bind(0, "127.0.0.42");
  await once(socket, "listening");
  t.after(() => socket.close());
  return socket;
}

async function serverFor(t: TestContext, clientPort: number, extra: Partial<DhcpServerOptions> = {}) {
  const lines: string[] = [];
  const log = createLogger({
    json: true,
    level: "debug",
    stream: { write: (line: string) => lines.push(line) },
  });
  const port = await freePort();
  const proxyPort = await freePort();
  const server = await startDhcpServer({
    serverAddress: "127.0.0.1",
    netmask: "255.0.0.0",
    offerAddress: "127.0.0.42",
    lockedMac: unitMac,
    bootFileFor: (arch) => (arch === 0 ? "pxelinux.0" : undefined),
    port,
    clientPort,
    proxyPort,
    log,
    ...extra,
  });
  t.after(() => server.close());
  const records = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { server, port, proxyPort, records };
}

function renewal(type = 3): DhcpPacket {
  return {
    op: 1,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0x01020304,
    secs: 0,
    flags: 0,
    ciaddr: "127.0.0.42",
    yiaddr: "0.0.0.0",
    siaddr: "0.0.0.0",
    giaddr: "0.0.0.0",
    chaddr: unitMac,
    sname: "",
    file: "",
    options: [option.byte(53, type), option.text(60, "PXEClient:Arch:00000:UNDI:002001")],
  };
}

async function nextReply(socket: Socket): Promise<{ packet: DhcpPacket; port: number }> {
  const [message, remote] = (await once(socket, "message", { signal: AbortSignal.timeout(5000) })) as [
    Buffer,
    { port: number },
  ];
  return { packet: decode(message), port: remote.port };
}

test("a malformed packet is logged with its sender and skipped; the next request is served", async (t) => {
  const client = await clientSocket(t);
  const { server, port, records } = await serverFor(t, client.address().port);
  const acks: unknown[] = [];
  server.on("ack", (event) => acks.push(event));

  client.send(Buffer.from("not a DHCP packet"), port, "127.0.0.1");
  client.send(encode(renewal()), port, "127.0.0.1");
  const { packet, port: from } = await nextReply(client);
  assert.equal(from, port, "replies leave from the server port");
  assert.equal(messageType(packet), 5);
  assert.equal(packet.yiaddr, "127.0.0.42");
  assert.equal(bootFileName(packet), "pxelinux.0");
  assert.equal(server.lockedMac(), unitMac);

  const warning = records().find((record) => record.event === "malformed");
  assert.ok(warning, "no warning for the malformed packet");
  assert.equal(warning.level, "warn");
  assert.equal(warning.subsystem, "dhcp");
  assert.equal(warning.peer, `127.0.0.42:${client.address().port}`);
  assert.match(String((warning.err as { message?: unknown }).message), /too short: 17 bytes/);
  const ack = records().find((record) => record.event === "ack");
  assert.equal(ack?.peer, unitMac);
  assert.equal(ack?.address, "127.0.0.42");
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(acks, [{ mac: unitMac, address: "127.0.0.42" }]);
});

test("the PXE boot server port answers with a unicast ACK to the sender", async (t) => {
  const client = await clientSocket(t);
  const { proxyPort } = await serverFor(t, 68);
  client.send(encode(renewal()), proxyPort, "127.0.0.1");
  const { packet, port } = await nextReply(client);
  assert.equal(port, proxyPort);
  assert.equal(messageType(packet), 5);
  assert.equal(packet.file, "pxelinux.0");
  assert.equal(packet.yiaddr, "0.0.0.0");
});

test("a port held by another program gives RTR7_ERR_LISTEN naming address and port", async (t) => {
  const holder = createSocket({ type: "udp4", reuseAddr: false });
  holder.bind(0, "127.0.0.1");
  await once(holder, "listening");
  t.after(() => holder.close());
  const taken = holder.address().port;
  await assert.rejects(
    startDhcpServer({
      serverAddress: "127.0.0.1",
      netmask: "255.0.0.0",
      offerAddress: "127.0.0.42",
      bootFileFor: () => "pxelinux.0",
      port: taken,
      proxyPort: await freePort(),
      log: createLogger({ level: "silent" }),
    }),
    (error: unknown) =>
      isRtr7Error(error, "RTR7_ERR_LISTEN") &&
      new RegExp(`listen on udp [0-9.]+:${taken}: .*EADDRINUSE`).test(error.message),
  );
});

test("the sockets opened before a bind failure are closed again", async (t) => {
  const port = await freePort();
  const holder = createSocket({ type: "udp4", reuseAddr: false });
  holder.bind(0, "127.0.0.1");
  await once(holder, "listening");
  const proxyPort = holder.address().port;
  const options: DhcpServerOptions = {
    serverAddress: "127.0.0.1",
    netmask: "255.0.0.0",
    offerAddress: "127.0.0.42",
    bootFileFor: () => "pxelinux.0",
    port,
    proxyPort,
    log: createLogger({ level: "silent" }),
  };
  await assert.rejects(startDhcpServer(options), (error: unknown) => isRtr7Error(error, "RTR7_ERR_LISTEN"));
  await new Promise<void>((resolve) => holder.close(() => resolve()));
  // Port 67's two sockets were closed: a plain (non-reuse) socket can take the port now.
  const probe = createSocket({ type: "udp4", reuseAddr: false });
  probe.bind(port, "127.0.0.1");
  await once(probe, "listening");
  probe.close();
  const server = await startDhcpServer(options);
  t.after(() => server.close());
  await server.close();
  await server.close();
});

test("options that cannot work are refused up front", async () => {
  const base: DhcpServerOptions = {
    serverAddress: "10.99.0.1",
    netmask: "255.255.255.0",
    offerAddress: "10.99.0.42",
    bootFileFor: () => undefined,
    log: createLogger({ level: "silent" }),
  };
  const cases: [Partial<DhcpServerOptions>, RegExp][] = [
    [{ serverAddress: "10.99.0" }, /serverAddress "10.99.0" is not an IPv4 address/],
    [{ netmask: "255.0.255.0" }, /netmask "255.0.255.0" is not a netmask/],
    [{ offerAddress: "10.99.1.42" }, /offer address 10.99.1.42 is outside 10.99.0.1\/255.255.255.0/],
    [{ offerAddress: "10.99.0.1" }, /is the server's own address/],
    [{ lockedMac: "52:54:00" }, /MAC "52:54:00": want six hex bytes/],
  ];
  for (const [change, message] of cases) {
    await assert.rejects(
      startDhcpServer({ ...base, ...change }),
      (error: unknown) => isRtr7Error(error, "RTR7_ERR_USAGE") && message.test(error.message),
    );
  }
});
