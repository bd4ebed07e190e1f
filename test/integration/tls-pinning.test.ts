// Issue 14's man in the middle: a process-mode unit is pinned by a first
// contact (`rtr7 fleet ls`), then a second unit with another certificate
// answers at the same address. `rtr7 safe-update` refuses with
// RTR7_ERR_UNIT_CERT_CHANGED naming both fingerprints, and sends no
// password: tshark on the workstation's link sees no HTTP Authorization
// header and nothing at all to the plain HTTP ports (only the TLS
// handshake on 443). Then `rtr7 fleet trust` accepts the new certificate
// on purpose and the CLI works again. One image build, no QEMU; every
// namespace and process is removed even when the test fails.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { haveTool, run, type Started } from "../../lab/processes.js";
import { startLabUnitPair, type LabUnitPair } from "../helpers/lab-unit-pair.js";
import { isRoot } from "../helpers/netns.js";
import { cliEntry } from "../helpers/paths.js";
import { jsonEvents } from "../helpers/scratch.js";
import { removeUnitImages, unitImages } from "../helpers/unit-images.js";

const unitAddress = "10.94.0.2";
const workstationAddress = "10.94.0.1";
const hostname = "pin1";
const tools = ["tshark", "mksquashfs", "unsquashfs", "mkfs.fat", "mcopy", "syslinux"];

async function cannotRun(): Promise<string | undefined> {
  if (!isRoot()) return "needs root: network namespaces and ports 80 and 443";
  for (const tool of tools) if (!(await haveTool(tool))) return `needs ${tool}: run scripts/setup.sh`;
  return undefined;
}
const skip = await cannotRun();

describe(
  "a man in the middle: the pinned certificate refuses another unit at the same address",
  { skip },
  () => {
    let pair: LabUnitPair | undefined;
    let work: string;
    let images: string;
    const stoppers: (() => Promise<void>)[] = [];

    before(async () => {
      work = await mkdtemp(path.join(tmpdir(), "rtr7-tls-pinning-"));
      images = await unitImages({ hostname, version: "pin-v1" });
      pair = await startLabUnitPair({
        label: "pin",
        hostname,
        imagesDir: images,
        unitAddress,
        workstationAddress,
      });
    });
    after(async () => {
      for (const stop of stoppers.splice(0).reverse()) await stop().catch(() => undefined);
      await pair?.destroy();
      await removeUnitImages();
      if (work) await rm(work, { recursive: true, force: true });
    });

    /** rtr7 in the workstation namespace with the test's own config and data directories. */
    async function rtr7(
      args: string[],
    ): Promise<{ code: number | string; output: string; started: Started }> {
      if (!pair) throw new Error("no unit");
      const started = pair.workstation.start(process.execPath, [cliEntry, ...args], {
        env: {
          ...process.env,
          XDG_CONFIG_HOME: path.join(work, "config"),
          XDG_DATA_HOME: path.join(work, "data"),
          RTR7_PASSWORD: pair.password,
        },
      });
      const code = await started.exited(60_000);
      return { code, output: started.output(), started };
    }
    const inventory = async () =>
      JSON.parse(await readFile(path.join(work, "config", "rtr7", "fleet.json"), "utf8")) as {
        units: { hostname: string; address?: string; tlsFingerprint?: string }[];
      };
    const unitFingerprint = async (dir: string) =>
      new X509Certificate(await readFile(path.join(dir, "perm", "rtr7", "tls", "cert.pem"))).fingerprint256;

    test("first contact pins; an impostor gets no password; fleet trust accepts it on purpose", async () => {
      if (!pair) throw new Error("no unit");
      const genuine = await unitFingerprint(pair.dir);

      // First contact: fleet ls over HTTPS pins what the unit presents.
      assert.equal((await rtr7(["fleet", "add", hostname, "--address", unitAddress, "--json"])).code, 0);
      const first = await rtr7(["fleet", "ls", "--no-browse", "--json"]);
      assert.equal(first.code, 0, first.output);
      const row = jsonEvents(first.output).find((event) => event.event === "unit");
      assert.equal(row?.health, "healthy", first.output);
      assert.ok(
        jsonEvents(first.output).some((event) => event.event === "tls-pinned"),
        first.output,
      );
      assert.equal((await inventory()).units[0]?.tlsFingerprint, genuine);

      // The impostor: another unit (another /perm, so another certificate) at the same address.
      await pair.unit.stop(15_000);
      const impostorDir = path.join(work, "impostor");
      await mkdir(path.join(impostorDir, "perm"), { recursive: true });
      await writeFile(path.join(impostorDir, "perm", "gokr-pw.txt"), `${pair.password}\n`);
      const impostor = pair.unitNs.start(process.execPath, [
        cliEntry,
        "lab",
        "unit",
        "--dir",
        impostorDir,
        "--hostname",
        hostname,
        "--address",
        unitAddress,
        "--image-dir",
        images,
      ]);
      stoppers.push(() => impostor.stop(15_000));
      await impostor.waitForLine(/rtr7 init: up:/, 60_000);
      const forged = await unitFingerprint(impostorDir);
      assert.notEqual(forged, genuine);

      const capture = path.join(work, "link.pcap");
      const tshark = pair.workstation.start("tshark", ["-i", "ws0", "-w", capture]);
      stoppers.push(() => tshark.stop(5000));
      await tshark.waitForLine(/Capturing on/, 20_000);
      const refused = await rtr7([
        "safe-update",
        "--hostname",
        hostname,
        "--address",
        unitAddress,
        "--release",
        images,
        "--json",
      ]);
      // Let the last packets reach the capture file before it stops.
      await new Promise((resolve) => setTimeout(resolve, 500));
      await tshark.stop(5000);
      assert.equal(refused.code, 1, refused.output);
      const error = jsonEvents(refused.output).find((event) => event.event === "error");
      assert.equal(error?.code, "RTR7_ERR_UNIT_CERT_CHANGED", refused.output);
      const message = String(error?.msg);
      assert.ok(message.includes(genuine) && message.includes(forged), message);
      assert.ok(message.includes(`${unitAddress}:443`), message);
      assert.match(String(error?.hint), new RegExp(`rtr7 fleet trust ${hostname}`));
      assert.ok(!refused.output.includes(pair.password), "the password is in the output");

      const read = async (filter: string) =>
        (
          await run("tshark", ["-r", capture, "-Y", filter, "-T", "fields", "-e", "frame.number"])
        ).stdout.trim();
      assert.notEqual(await read("tcp.dstport == 443"), "", "the capture saw no TLS at all: it did not work");
      assert.equal(await read("http.authorization"), "", "a basic-auth header crossed the link");
      assert.equal(await read("tcp.port == 80 || tcp.port == 7733 || tcp.port == 8077"), "");

      // fleet ls says what is wrong with the unit, not merely that it is silent.
      const listed = await rtr7(["fleet", "ls", "--no-browse", "--json"]);
      assert.match(
        String(jsonEvents(listed.output).find((line) => line.event === "unit")?.health),
        new RegExp(`certificate changed \\(RTR7_ERR_UNIT_CERT_CHANGED\\).*rtr7 fleet trust ${hostname}`),
        listed.output,
      );

      // On purpose: fleet trust records the new certificate, and the CLI works again.
      const trusted = await rtr7(["fleet", "trust", hostname, "--json"]);
      assert.equal(trusted.code, 0, trusted.output);
      const event = jsonEvents(trusted.output).find((line) => line.event === "trusted");
      assert.equal(event?.previous, genuine);
      assert.equal(event?.current, forged);
      assert.equal((await inventory()).units[0]?.tlsFingerprint, forged);
      assert.equal((await inventory()).units[0]?.address, unitAddress);
      const again = await rtr7(["fleet", "ls", "--no-browse", "--json"]);
      assert.equal(
        jsonEvents(again.output).find((line) => line.event === "unit")?.health,
        "healthy",
        again.output,
      );
    });
  },
);
