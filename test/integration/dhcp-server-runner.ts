// Runs the recovery DHCP server in the process's network namespace, for the
// integration test (started with `ip netns exec NS node dist/.../dhcp-server-runner.js`).
// Logs pino JSON lines on stdout (the "listening" line says it is ready; the
// offer/ack/ignore lines are what the test waits for) and stops on SIGTERM.
import { parseArgs } from "node:util";
import { createLogger } from "../../lib/log.js";
import { startDhcpServer } from "../../server/dhcp/server.js";

const { values } = parseArgs({
  options: {
    server: { type: "string" },
    netmask: { type: "string" },
    offer: { type: "string" },
    mac: { type: "string" },
  },
});
if (!values.server || !values.netmask || !values.offer) {
  throw new Error("usage: dhcp-server-runner --server ADDR --netmask MASK --offer ADDR [--mac MAC]");
}

const bootFiles = new Map([
  [0, "pxelinux.0"],
  [7, "syslinux.efi"],
  [9, "syslinux.efi"],
]);
const log = createLogger({ json: true, level: "debug" });
const server = await startDhcpServer({
  serverAddress: values.server,
  netmask: values.netmask,
  offerAddress: values.offer,
  lockedMac: values.mac,
  bootFileFor: (arch) => bootFiles.get(arch),
  log,
});
process.once("SIGTERM", () => {
  void server.close().then(() => process.exit(0));
});
