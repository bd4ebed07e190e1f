// Runs rtr7's TFTP server in the process's network namespace, for the
// integration test and the benchmark (started with `ip netns exec NS node
// dist/test/integration/tftp-server-runner.js ...`). Serves every regular file
// under --dir by its relative path (`pxelinux.cfg/default`) through a FileMap,
// not the directory; logs pino JSON lines
// on stdout ("tftp-listening" says it is ready) and stops on SIGTERM.
import { readdir } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { createLogger } from "../../lib/log.js";
import { FileMap, fileFromDisk } from "../../lib/served-files.js";
import { startTftpServer } from "../../server/tftp/server.js";

const { values } = parseArgs({
  options: {
    address: { type: "string" },
    port: { type: "string", default: "69" },
    dir: { type: "string" },
    "busy-poll": { type: "string" },
    level: { type: "string", default: "debug" },
  },
});
if (!values.address || !values.dir) {
  throw new Error("usage: tftp-server-runner --address ADDR [--port N] --dir DIR [--busy-poll MICROSECONDS]");
}

const files = new FileMap();
for (const entry of await readdir(values.dir, { withFileTypes: true, recursive: true })) {
  if (!entry.isFile()) continue;
  const absolute = path.join(entry.parentPath, entry.name);
  files.add(await fileFromDisk(path.relative(values.dir, absolute), absolute));
}
const log = createLogger({ json: true, level: values.level });
const server = await startTftpServer({
  address: values.address,
  port: Number(values.port),
  files,
  log,
  ...(values["busy-poll"] === undefined ? {} : { busyPollMicroseconds: Number(values["busy-poll"]) }),
});
process.once("SIGTERM", () => {
  void server.close().then(() => process.exit(0));
});
