// Sends one TFTP read request with options and prints the server's first
// answer as one JSON line: {"opcode":6,"options":{...}} for an OACK,
// {"opcode":5,"code":1,"message":"..."} for an ERROR. curl and tftp-hpa do
// not show the OACK, so the integration test runs this inside the client's
// namespace to check what tsize the server answered. After an OACK it
// declines the transfer with ERROR 8, as RFC 2347 lets a client do.
// Usage: node tftp-probe.js ADDRESS PORT NAME [OPTION VALUE]...
import { createSocket } from "node:dgram";

const [address, port, name, ...options] = process.argv.slice(2);
if (address === undefined || port === undefined || name === undefined || options.length % 2 !== 0) {
  throw new Error("usage: tftp-probe ADDRESS PORT NAME [OPTION VALUE]...");
}

const socket = createSocket("udp4");
const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: "no answer within 5 s" }));
  process.exit(1);
}, 5000);
socket.on("message", (packet, remote) => {
  clearTimeout(timer);
  const opcode = packet.readUInt16BE(0);
  if (opcode === 6) {
    const fields = packet.toString("latin1", 2).split("\0").slice(0, -1);
    const answered: Record<string, string> = {};
    for (let index = 0; index + 1 < fields.length; index += 2) {
      answered[fields[index] as string] = fields[index + 1] as string;
    }
    console.log(JSON.stringify({ opcode, options: answered }));
    const decline = Buffer.concat([Buffer.from([0, 5, 0, 8]), Buffer.from("probe only\0")]);
    socket.send(decline, remote.port, remote.address, () => socket.close());
  } else {
    const code = packet.length >= 4 ? packet.readUInt16BE(2) : -1;
    const message = opcode === 5 ? packet.toString("latin1", 4).replace(/\0.*$/s, "") : "";
    console.log(JSON.stringify({ opcode, code, message }));
    socket.close();
  }
});
const request = Buffer.concat([
  Buffer.from([0, 1]),
  Buffer.from([name, "octet", ...options].map((field) => `${field}\0`).join(""), "latin1"),
]);
socket.send(request, Number(port), address);
