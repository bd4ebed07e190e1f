import { test } from "node:test";
import assert from "node:assert/strict";
import { isRtr7Error } from "../../lib/errors.js";
import { parseCmdline } from "../../recovery-init/cmdline.js";
import { recoveryCmdline } from "../../server/pxe/boot-files.js";

test("recovery-init reads back exactly what rtr7 recover put on the kernel command line", () => {
  const line = `BOOT_IMAGE=vmlinuz ${recoveryCmdline({ serverAddress: "10.0.0.254", httpPort: 7773, hostname: "router7", token: "feed" })}`;
  assert.deepEqual(parseCmdline(line + "\n"), {
    server: "10.0.0.254",
    port: 7773,
    hostname: "router7",
    token: "feed",
  });
  assert.equal(parseCmdline(`${line} rtr7.disk=sdb`).disk, "sdb");
});

test("a command line without the server, hostname or token is an error naming the key", () => {
  assert.throws(
    () => parseCmdline("console=ttyS0 rtr7.server=10.0.0.1 rtr7.hostname=x"),
    (error: unknown) =>
      isRtr7Error(error, "RTR7_ERR_CMDLINE") && /rtr7\.token= is missing/.test(error.message),
  );
  assert.throws(
    () => parseCmdline("rtr7.server=10.0.0.1 rtr7.hostname=x rtr7.token=y rtr7.port=99999"),
    (error: unknown) =>
      isRtr7Error(error, "RTR7_ERR_CMDLINE") && /rtr7\.port=99999 is not a port/.test(error.message),
  );
});
