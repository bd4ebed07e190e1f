// rtr7 safe-update against a process-mode unit (`rtr7 lab unit`) in a
// network namespace, run from a "workstation" namespace that knows the
// unit by its hostname: v1 → v2 succeeds and keeps /perm; v3 (its services
// start but report unhealthy) is rolled back; v4 (its init exits at once)
// falls back to v2 by itself, with no PXE; a link cut in the middle of the
// root push switches nothing and a second run succeeds; the CLI killed
// with SIGKILL at each step always leaves the unit on a committed slot; and
// once the unit trusts the workstation's key (issue 14), a signed release
// goes through, a rotated key is introduced on the way, an older release
// needs --allow-downgrade, and an unsigned one is refused and rolled back
// with no flag.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { haveTool, type Started } from "../../lab/processes.js";
import { isRoot, Netns } from "../helpers/netns.js";
import { startLabUnitPair, type LabUnitPair } from "../helpers/lab-unit-pair.js";
import { cliEntry } from "../helpers/paths.js";
import { jsonEvents } from "../helpers/scratch.js";
import { removeUnitImages, unitImages } from "../helpers/unit-images.js";
import { safeUpdateSteps } from "../../updates/safe-update.js";
import { inventoryFile, inventoryUnit } from "../../updates/fleet/inventory.js";
import { keysDir, loadSigningKey } from "../../updates/keys.js";
import { addTrustedKey, readTrustedKeys, trustedKeysDir } from "../../lib/trust/trusted-keys.js";
import { readSlotReleases } from "../../router/update-api/release-state.js";

const execFileAsync = promisify(execFile);
const hostname = "lab5";
const unitAddress = "10.93.0.2";
const workstationAddress = "10.93.0.1";
const keep = "survives every update and rollback\n";
const tools = ["curl", "mksquashfs", "unsquashfs", "mkfs.fat", "mcopy", "syslinux", "tar"];

async function cannotRun(): Promise<string | undefined> {
  if (!isRoot()) return "needs root: network namespaces and port 80";
  for (const tool of tools) if (!(await haveTool(tool))) return `needs ${tool}: run scripts/setup.sh`;
  return undefined;
}
const skip = await cannotRun();

interface Health {
  version: string;
  slot: string;
  trial: boolean;
  first_error: string;
}

describe("rtr7 safe-update against a process-mode unit", { skip, timeout: 30 * 60_000 }, () => {
  let pair: LabUnitPair | undefined;
  let unitNs: Netns;
  let workstation: Netns;
  let work: string;
  let unitDir: string;
  let updatesDir: string;
  let configHome: string;
  let unit: Started;
  let password: string;
  const images: Record<string, string> = {};

  async function health(): Promise<Health | undefined> {
    const result = await workstation
      .exec("curl", ["-sS", "--max-time", "2", `http://${hostname}:7733/health.json`], { timeoutMs: 5000 })
      .catch(() => undefined);
    if (!result) return undefined;
    try {
      return JSON.parse(result.stdout) as Health;
    } catch {
      return undefined;
    }
  }

  /** Waits until the unit is healthy, committed, and stays so for a moment. */
  async function settled(timeoutMs: number): Promise<Health> {
    const deadline = Date.now() + timeoutMs;
    let last: Health | undefined;
    while (Date.now() < deadline) {
      const first = await health();
      last = first;
      if (first && !first.trial && first.first_error === "") {
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const second = await health();
        if (second && second.version === first.version && second.slot === first.slot && !second.trial)
          return second;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    throw new Error(
      `the unit never settled on a committed slot; last ${JSON.stringify(last)}\n${unit.output().slice(-3000)}`,
    );
  }

  async function committedSlot(): Promise<string> {
    const { stdout } = await execFileAsync(
      "mcopy",
      ["-n", "-i", path.join(unitDir, "boot.img"), "::syslinux.cfg", "-"],
      {
        env: { ...process.env, MTOOLS_SKIP_CHECK: "1" },
      },
    );
    return /^DEFAULT (\S+)/m.exec(stdout)?.[1] ?? "";
  }

  function safeUpdateArgs(version: string, extra: string[] = []): string[] {
    return [
      cliEntry,
      "safe-update",
      "--hostname",
      hostname,
      "--updates-dir",
      updatesDir,
      "--build-command",
      `cp "${images[version]}"/mbr.img "${images[version]}"/boot.img "${images[version]}"/root.img "$RTR7_OUT_DIR"/`,
      "--health-timeout",
      "20s",
      "--trial-deadline",
      "25s",
      "--json",
      "--verbose",
      ...extra,
    ];
  }

  /** Runs safe-update in the workstation namespace to its end. */
  async function safeUpdate(version: string, extra: string[] = []) {
    const started = workstation.start(process.execPath, safeUpdateArgs(version, extra), {
      env: { ...process.env, XDG_CONFIG_HOME: configHome },
    });
    const code = await started.exited(5 * 60_000);
    return { code, output: started.output(), started };
  }

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "rtr7-safe-update-"));
    const diagdConfig = path.join(work, "unhealthy-diagd.json");
    // v3's services start, but its diagd checks a port nobody listens on.
    await writeFile(diagdConfig, JSON.stringify({ tcp: [`${workstationAddress}:9`] }));
    const exitAtOnce = path.join(work, "exit-at-once.mjs");
    await writeFile(exitAtOnce, 'console.log("v4 init: exiting at once");\nprocess.exit(1);\n');
    [images.v1, images.v2, images.v3, images.v4] = await Promise.all([
      unitImages({ hostname, version: "v1" }),
      unitImages({ hostname, version: "v2" }),
      unitImages({
        hostname,
        version: "v3",
        add: [{ source: diagdConfig, destination: "/etc/rtr7/diagd.json" }],
      }),
      unitImages({ hostname, version: "v4", routerEntry: exitAtOnce }),
    ]);
    pair = await startLabUnitPair({
      label: "suunit",
      hostname,
      imagesDir: images.v1 ?? "",
      unitAddress,
      workstationAddress,
      permFiles: { "data/keep.txt": keep },
    });
    ({ unitNs, workstation, unit, password } = pair);
    unitDir = pair.dir;
    updatesDir = path.join(work, "updates");
    await workstation.setHosts({ [hostname]: unitAddress });
    configHome = path.join(work, "config");
    await mkdir(path.join(configHome, "gokrazy", "hosts", hostname), { recursive: true });
    await writeFile(
      path.join(configHome, "gokrazy", "hosts", hostname, "http-password.txt"),
      `${password}\n`,
    );
    assert.equal((await settled(30_000)).version, "v1");
  });

  after(async () => {
    await pair?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
    await removeUnitImages();
  });

  test("v1 → v2: the unit reports v2, /perm is intact, the run directory holds everything", async () => {
    const { code, output } = await safeUpdate("v2");
    assert.equal(code, 0, output.slice(-4000));
    const now = await settled(10_000);
    assert.equal(now.version, "v2");
    assert.equal(await committedSlot(), now.slot);
    assert.equal(await readFile(path.join(unitDir, "perm", "data", "keep.txt"), "utf8"), keep);

    const runs = await readdir(path.join(updatesDir, hostname));
    assert.equal(runs.length, 1);
    const runDir = path.join(updatesDir, hostname, runs[0] ?? "");
    const files = await readdir(runDir);
    for (const name of [
      "mbr.img",
      "boot.img",
      "root.img",
      "backup.tar.gz",
      "stdout.log",
      "stderr.log",
      "events.jsonl",
      "recover.bash",
    ])
      assert.ok(files.includes(name), `${name} in ${files.join(", ")}`);
    // TLS with no flag: the first contact pinned the unit's certificate, and the update went over HTTPS.
    const pin = (await inventoryUnit(inventoryFile({ XDG_CONFIG_HOME: configHome }), hostname))
      ?.tlsFingerprint;
    const certificate = await readFile(path.join(unitDir, "perm", "rtr7", "tls", "cert.pem"));
    assert.equal(pin, new X509Certificate(certificate).fingerprint256);
    assert.match(output, /first contact, pinned its TLS certificate/);
    const listing = await execFileAsync("tar", ["tzf", path.join(runDir, "backup.tar.gz")]);
    assert.match(listing.stdout, /data\/keep\.txt/);
    const password = (await readFile(path.join(unitDir, "perm", "gokr-pw.txt"), "utf8")).trim();
    for (const name of ["stdout.log", "stderr.log", "events.jsonl", "run.json", "recover.bash"]) {
      assert.ok(!(await readFile(path.join(runDir, name), "utf8")).includes(password), `password in ${name}`);
    }
    assert.ok(!output.includes(password), "password in the CLI's output");
    const events = jsonEvents(output);
    assert.ok(events.some((event) => event.event === "updated" && event.version === "v2"));
  });

  test("v3 (services up, unhealthy): rolled back to v2, /perm intact, non-zero exit with the reason", async () => {
    const before = await settled(10_000);
    const { code, output } = await safeUpdate("v3");
    assert.notEqual(code, 0);
    assert.match(output, /v3 was not healthy within 20 s/);
    assert.match(output, /now runs v2/);
    const now = await settled(60_000);
    assert.deepEqual([now.version, now.slot], ["v2", before.slot]);
    assert.equal(await committedSlot(), before.slot);
    assert.equal(await readFile(path.join(unitDir, "perm", "data", "keep.txt"), "utf8"), keep);
    // The failed run has its recover.bash too, which warns and names the good run.
    const runs = (await readdir(path.join(updatesDir, hostname))).sort();
    const failedScript = await readFile(
      path.join(updatesDir, hostname, runs.at(-1) ?? "", "recover.bash"),
      "utf8",
    );
    assert.match(failedScript, /warning: these are the images of a failed update to v3/);
    assert.ok(failedScript.includes(path.join(updatesDir, hostname, runs.at(-2) ?? "")), failedScript);
  });

  test("v4 (init exits at once): the unit falls back to v2 by itself, no PXE", async () => {
    const before = await settled(10_000);
    const { code, output } = await safeUpdate("v4");
    assert.notEqual(code, 0);
    assert.match(output, /did not come up: the unit fell back to v2/);
    assert.doesNotMatch(output, /recovering it with/);
    assert.match(unit.output(), /v4 init: exiting at once/);
    const now = await settled(60_000);
    assert.deepEqual([now.version, now.slot], ["v2", before.slot]);
  });

  test("the link cut in the middle of the root push: nothing switched, and the next run succeeds", async () => {
    const before = await settled(10_000);
    const cut = workstation.start(process.execPath, safeUpdateArgs("v1"), {
      env: { ...process.env, XDG_CONFIG_HOME: configHome },
    });
    await cut.waitForLine(/"image":"root\.img".*"bytesDone":[1-9]/, 120_000);
    await unitNs.exec("ip", ["link", "set", "lan0", "down"]);
    const code = await cut.exited(120_000);
    await unitNs.exec("ip", ["link", "set", "lan0", "up"]);
    assert.notEqual(code, 0);
    assert.match(cut.output(), /nothing was switched/);
    const now = await settled(30_000);
    assert.deepEqual([now.version, now.slot], [before.version, before.slot]);
    assert.equal(await committedSlot(), before.slot);

    const again = await safeUpdate("v1");
    assert.equal(again.code, 0, again.output.slice(-4000));
    assert.equal((await settled(10_000)).version, "v1");
  });

  test("the CLI killed with SIGKILL at each step: the unit always ends on a committed, bootable slot", async () => {
    let version = "v2";
    // No soak here (the fleet test soaks): its step passes at once, like commit's neighbour.
    for (const step of safeUpdateSteps.filter((name) => name !== "soak")) {
      const killed = workstation.start(process.execPath, safeUpdateArgs(version), {
        env: { ...process.env, XDG_CONFIG_HOME: configHome },
      });
      await killed.waitForLine(new RegExp(`"event":"step","step":"${step}"`), 180_000);
      killed.child.kill("SIGKILL");
      await killed.exited(10_000);
      const now = await settled(120_000);
      assert.equal(await committedSlot(), now.slot, `after SIGKILL at ${step}`);
      assert.ok(["v1", "v2"].includes(now.version), `after SIGKILL at ${step}: ${now.version}`);
      console.log(`SIGKILL at ${step}: the unit settled on ${now.version}, slot ${now.slot} (committed)`);
      version = now.version === "v2" ? "v1" : "v2";
    }
  });

  test("signed: a trusting unit takes the signed release, learns a rotated key, refuses a downgrade without the flag and an unsigned one", async () => {
    const env = { ...process.env, XDG_CONFIG_HOME: configHome };
    const keys = keysDir(env);
    const cli = (args: string[]) => execFileAsync(process.execPath, [cliEntry, ...args], { env });
    const withManifest = (version: string, extra: string[] = []): string[] =>
      safeUpdateArgs(version, extra).map((arg) =>
        arg.startsWith("cp ")
          ? arg.replace("/root.img", `/root.img "${images[version]}"/manifest.json`)
          : arg,
      );
    const run = async (version: string, extra: string[] = []) => {
      const started = workstation.start(process.execPath, withManifest(version, extra), { env });
      const code = await started.exited(5 * 60_000);
      return { code, output: started.output() };
    };
    const buildTime = async (version: string): Promise<number> =>
      Date.parse(
        (
          JSON.parse(await readFile(path.join(images[version] ?? "", "manifest.json"), "utf8")) as {
            buildTime: string;
          }
        ).buildTime,
      );
    const perm = path.join(unitDir, "perm");
    try {
      await cli(["keys", "init"]);
      const first = (await loadSigningKey(keys))?.publicKey;
      assert.ok(first, "rtr7 keys init made no key");
      await addTrustedKey(perm, first);

      const start = await settled(30_000);
      const [next, back] = start.version === "v1" ? ["v2", "v1"] : ["v1", "v2"];
      const signed = await run(next);
      assert.equal(signed.code, 0, signed.output.slice(-4000));
      const now = await settled(10_000);
      assert.equal(now.version, next);
      assert.match(signed.output, /The unit verified release/, "the unit did not verify the manifest");
      assert.equal((await readSlotReleases(perm))[now.slot as "a" | "b"]?.keyId, first.keyId);

      // A new key, which the unit learns from the statement the old key signed.
      await cli(["keys", "rotate"]);
      const second = (await loadSigningKey(keys))?.publicKey;
      assert.ok(second && second.keyId !== first.keyId);
      if ((await buildTime(back)) < (await buildTime(next))) {
        const older = await run(back);
        assert.notEqual(older.code, 0, "an older release went through without --allow-downgrade");
        assert.match(older.output, /RTR7_ERR_DOWNGRADE/);
        assert.match(older.output, /nothing was switched/);
        assert.deepEqual((await settled(10_000)).version, next);
      }
      const rotated = await run(back, ["--allow-downgrade"]);
      assert.equal(rotated.code, 0, rotated.output.slice(-4000));
      assert.equal((await settled(10_000)).version, back);
      assert.deepEqual(
        (await readTrustedKeys(perm)).keys.map((key) => key.keyId),
        [second.keyId],
        "the unit still trusts the replaced key",
      );

      // Without the workstation's keys, the release goes out unsigned: refused at testboot, rolled back.
      const before = await settled(10_000);
      await rm(keys, { recursive: true, force: true });
      const unsigned = await run(next);
      assert.notEqual(unsigned.code, 0, "an unsigned release went through");
      assert.match(unsigned.output, /RTR7_ERR_SIGNATURE/);
      const after = await settled(60_000);
      assert.deepEqual([after.version, after.slot], [before.version, before.slot]);
      assert.equal(await committedSlot(), before.slot);
    } finally {
      await rm(trustedKeysDir(perm), { recursive: true, force: true });
      await rm(keys, { recursive: true, force: true });
    }
  });
});
