// Runs the recovery HTTP server alone, in its own process, so a test can
// read that process's memory from /proc/PID/status while it is flooded.
// argv: the image to serve as root.img, the idle time in ms, the unit's
// address (a priority peer). Prints one JSON
// line {port, pid} once it listens; stops on SIGTERM.
import { buildRecoveryHttp } from "../../server/http/recovery-http.js";
import { FileMap, fileFromDisk } from "../../lib/served-files.js";
import { silentLogger } from "../../lib/log.js";

const [image, idleMs, unitAddress] = process.argv.slice(2);
if (image === undefined || idleMs === undefined || unitAddress === undefined)
  throw new Error("usage: recovery-http-server IMAGE IDLE_MS UNIT_ADDRESS");
const http = buildRecoveryHttp({
  files: new FileMap([await fileFromDisk("root.img", image)]),
  manifest: { images: [] },
  token: "flood-test",
  log: silentLogger(),
  transfers: { maxTransfers: 8, maxTransfersPerPeer: 2, idleMs: Number(idleMs) },
  priorityPeers: [unitAddress],
});
await http.app.listen({ host: "127.0.0.1", port: 0 });
const address = http.app.server.address();
const port = typeof address === "object" && address !== null ? address.port : 0;
process.stdout.write(JSON.stringify({ port, pid: process.pid }) + "\n");
process.once("SIGTERM", () => void http.app.close().then(() => process.exit(0)));
