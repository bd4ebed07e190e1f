// A unit with a LAN and an uplink (issue 11, item 1): its services answer
// on the LAN and answer nothing on the uplink. Three namespaces: the unit
// (lan0 10.93.0.1, uplink0 203.0.113.1, a documentation range standing for
// the internet), a LAN host and a host on the uplink. diagd runs as the
// supervisor runs it, with the listen config init reads from /perm: first
// the default (lan0's address from interfaces.json, and loopback), then a
// unit whose lan0 has no fixed address, which listens everywhere and still
// answers the uplink's address 403.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { readListenConfig } from "../../router/http-guard/listen-config.js";
import type { ServiceConfig } from "../../router/unit.js";
import { joinWithVeth, namespacesFor, requireRootAndTools, type Netns } from "../helpers/netns.js";
import { repoPath } from "../helpers/paths.js";
import { scratchDir } from "../helpers/scratch.js";

const lanAddress = "10.93.0.1";
const uplinkAddress = "203.0.113.1";

/** curl's exit code, the HTTP status ("000" when nothing answered) and the body. */
async function fetchFrom(host: Netns, url: string): Promise<{ exit: number; status: string; body: string }> {
  // Through sh, so a failed curl still gives its output and exit code.
  const { stdout } = await host.exec("sh", [
    "-c",
    'curl -sS --max-time 5 -o - -w "\\n%{http_code}" "$1"; echo " $?"',
    "sh",
    url,
  ]);
  const lines = stdout.trimEnd().split("\n");
  const [status = "", exit = ""] = (lines.pop() ?? "").split(" ");
  return { exit: Number(exit), status, body: lines.join("\n") };
}

test("a unit's services answer its LAN and nothing on its uplink", { timeout: 120_000 }, async (t) => {
  if (!(await requireRootAndTools(t, ["ip", "curl"]))) return;
  const work = await scratchDir(t, "unit-listen");
  const perm = path.join(work, "perm");
  const etc = path.join(work, "etc");
  for (const dir of [perm, etc, path.join(work, "run")]) await mkdir(dir, { recursive: true });
  const [unit, lan, wan] = await namespacesFor(t, "lstunit", "lstlan", "lstwan");
  if (!unit || !lan || !wan) throw new Error("no namespaces");
  await joinWithVeth(unit, { device: "lan0", cidr: `${lanAddress}/24` }, lan, {
    device: "eth0",
    cidr: "10.93.0.2/24",
  });
  await joinWithVeth(unit, { device: "uplink0", cidr: `${uplinkAddress}/24` }, wan, {
    device: "eth0",
    cidr: "203.0.113.2/24",
  });

  const startDiagd = async (): Promise<{ stop(): Promise<void> }> => {
    const { problem, ...listen } = await readListenConfig(perm);
    assert.equal(problem, undefined);
    const config: ServiceConfig = {
      mode: "unit",
      hostname: "edge1",
      version: "v-listen",
      model: "process",
      slot: "a",
      trial: false,
      address: listen.addresses[0] ?? "0.0.0.0",
      listen,
      ports: { update: 8080, diagd: 7733, backupd: 8077 },
      paths: {
        boot: path.join(work, "boot.img"),
        roots: { a: path.join(work, "root-a.img"), b: path.join(work, "root-b.img") },
        mbr: path.join(work, "mbr.img"),
        perm,
        etc,
        run: path.join(work, "run"),
      },
      interfaceName: "lan0",
      bootedAtMs: Date.now(),
    };
    const diagd = unit.start(process.execPath, [repoPath("dist/router/main.js"), "service", "diagd"], {
      env: { ...process.env, RTR7_SERVICE_CONFIG: JSON.stringify(config) },
    });
    await diagd.waitForLine(/diagd listening/, 15_000);
    return diagd;
  };

  await t.test(
    "default: bound to lan0's address and loopback; the uplink's address refuses the connection",
    async () => {
      await writeFile(
        path.join(perm, "interfaces.json"),
        JSON.stringify({ interfaces: [{ name: "lan0", addr: `${lanAddress}/24` }] }),
      );
      const diagd = await startDiagd();
      try {
        const fromLan = await fetchFrom(lan, `http://${lanAddress}:7733/health.json`);
        assert.equal(fromLan.status, "200", JSON.stringify(fromLan));
        const fromUplink = await fetchFrom(wan, `http://${uplinkAddress}:7733/health.json`);
        assert.equal(fromUplink.status, "000", "something answered on the uplink");
        assert.equal(fromUplink.exit, 7, "want curl's 'connection refused'");
        const loopback = await unit.exec("curl", [
          "-sS",
          "-o",
          "/dev/null",
          "-w",
          "%{http_code}",
          "http://127.0.0.1:7733/health.json",
        ]);
        assert.equal(loopback.stdout, "200");
      } finally {
        await diagd.stop();
      }
    },
  );

  await t.test("lan0 without a fixed address: bound everywhere, and the uplink's hosts get 403", async () => {
    await writeFile(path.join(perm, "interfaces.json"), JSON.stringify({ interfaces: [{ name: "lan0" }] }));
    const diagd = await startDiagd();
    try {
      const fromLan = await fetchFrom(lan, `http://${lanAddress}:7733/health.json`);
      assert.equal(fromLan.status, "200");
      const fromUplink = await fetchFrom(wan, `http://${uplinkAddress}:7733/health.json`);
      assert.equal(fromUplink.status, "403");
      assert.match(fromUplink.body, /"code":"RTR7_ERR_HTTP_SOURCE"/);
      assert.doesNotMatch(fromUplink.body, /first_error/, "the health report leaked to the uplink");
    } finally {
      await diagd.stop();
    }
  });
});
