// Bad input: 10,000 random and mutated DHCP and TFTP packets at a running
// `rtr7 recover`. Afterwards the server is still up, logged what it skipped,
// had no unhandled rejection, and a good client is still served over DHCP,
// TFTP and HTTP.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { joinWithVeth, namespacesFor, requireRootAndTools } from "../helpers/netns.js";
import { repoPath } from "../helpers/paths.js";
import { fakeImages, recoverArgs, scratchDir } from "../helpers/scratch.js";

const goodMac = "02:00:00:00:00:42";

test(
  "10,000 random and mutated DHCP and TFTP packets: no crash, and a good client is still served",
  { timeout: 240_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["busybox", "curl"]))) return;
    const work = await scratchDir(t, "fuzz");
    const images = await fakeImages(work);
    const [server, client] = await namespacesFor(t, "fuzzsrv", "fuzzcli");
    if (!server || !client) throw new Error("no namespaces");
    await joinWithVeth(server, { device: "lan0", cidr: "10.78.0.254/24" }, client, {
      device: "eth0",
      cidr: "10.78.0.9/24",
    });
    await client.exec("ip", ["route", "add", "default", "dev", "eth0"]);
    const recover = server.start(
      process.execPath,
      recoverArgs({
        interfaceName: "lan0",
        hostname: "fuzz",
        images,
        extra: [`--mac=${goodMac}`, "--json", "--verbose"],
      }),
    );
    await recover.waitForLine(/"event":"start"/, 30_000);
    await new Promise((resolve) => setTimeout(resolve, 1000));

    const sender = client.start(process.execPath, [
      repoPath("dist/test/integration/fuzz-sender.js"),
      "10.78.0.254",
      "10000",
      "7",
    ]);
    await sender.waitForLine(/sent 10000 packets/, 180_000);
    await new Promise((resolve) => setTimeout(resolve, 2000));

    assert.equal(recover.child.exitCode, null, `rtr7 recover died:\n${recover.output().slice(-3000)}`);
    const output = recover.output();
    assert.doesNotMatch(output, /unhandled|uncaught|TypeError|RangeError/i);
    const events = output
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as { subsystem?: string; level?: string });
    const skipped = (subsystem: string) =>
      events.filter((event) => event.subsystem === subsystem && event.level === "warn").length;
    t.diagnostic(`skipped and logged: ${skipped("dhcp")} DHCP, ${skipped("tftp")} TFTP packets`);
    assert.ok(skipped("dhcp") > 100, `only ${skipped("dhcp")} malformed DHCP packets were logged`);
    assert.ok(skipped("tftp") > 100, `only ${skipped("tftp")} malformed TFTP packets were logged`);

    // A good client: DHCP (the locked MAC, as the unit's own plain client would ask) ...
    await client.exec("ip", ["link", "set", "eth0", "address", goodMac]);
    const dhcpScript = path.join(work, "udhcpc.sh");
    await writeFile(dhcpScript, '#!/bin/sh\n[ "$1" = bound ] && echo "BOUND ip=$ip"\nexit 0\n', {
      mode: 0o755,
    });
    const dhcp = await client.exec(
      "busybox",
      ["udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "1", "-s", dhcpScript],
      {
        timeoutMs: 30_000,
      },
    );
    assert.match(dhcp.stdout, /BOUND ip=10\.78\.0\.1\b/);
    // Only the address the ACK gave is served (server/pxe/unit-access.ts).
    await client.exec("ip", ["addr", "add", "10.78.0.1/24", "dev", "eth0"]);
    // ... TFTP ...
    const fetched = path.join(work, "fetched.bin");
    await client.exec(
      "curl",
      [
        "-sS",
        "--interface",
        "10.78.0.1",
        "--tftp-blksize",
        "1468",
        "-o",
        fetched,
        "tftp://10.78.0.254/pxelinux.cfg/default",
      ],
      {
        timeoutMs: 30_000,
      },
    );
    assert.match(await readFile(fetched, "utf8"), /rtr7\.hostname=fuzz/);
    // ... and HTTP.
    const manifest = await client.exec(
      "curl",
      ["-sS", "--fail", "--interface", "10.78.0.1", "http://10.78.0.254:7773/manifest.json"],
      {
        timeoutMs: 30_000,
      },
    );
    assert.equal((JSON.parse(manifest.stdout) as { images: unknown[] }).images.length, 3);
    assert.equal(recover.child.exitCode, null);
  },
);
