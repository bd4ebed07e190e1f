// Issue 14's point 6, and what the recovery server reveals: `rtr7 recover`
// on a bridge in one namespace, the unit and another host of the LAN in two
// more, each with its own MAC and address. Before any ACK nobody is served
// (the intruder, nor a host that gave itself the unit's address). The unit
// takes the DHCP lock with busybox udhcpc as a PXE client; then the other
// MAC gets no lease, and curl and tftp-hpa from its address are refused
// ("Access violation", exit 69) for pxelinux.cfg/default and every other
// TFTP name, and HTTP 403 RTR7_ERR_RECOVERY_PEER for every image, the
// manifest, the password and the trusted keys: no token, no image. Each refusal is logged with
// the peer, and the unit is served on (the token, byte-exact images).
//
// Then, from the unit's own address with the token, every name the servers
// serve and a list of traversal and guessed names (the keys directory,
// gokrazy's password files, absolute paths): no private key and no
// password but this unit's anywhere in what came back. Needs root, curl,
// tftp-hpa and busybox.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { addBridge, plugIntoBridge } from "../../lab/netns.js";
import { namespacesFor, requireRootAndTools, type Netns } from "../helpers/netns.js";
import { pxeDhcp, setMac } from "../helpers/pxe-client.js";
import { fakeImages, jsonEvents, recoverArgs, scratchDir } from "../helpers/scratch.js";

const server = "10.77.0.254";
const unitAddress = "10.77.0.1";
const intruderAddress = "10.77.0.9";
const unitMac = "52:54:00:77:00:01";
const intruderMac = "52:54:00:77:00:02";
const base = `http://${server}:7773`;
const hostname = "lock-unit";

/** Every name the recovery TFTP server may serve (the EFI ones when syslinux-efi is installed). */
const tftpNames = [
  "pxelinux.0",
  "ldlinux.c32",
  "syslinux.efi",
  "ldlinux.e64",
  "pxelinux.cfg/default",
  "vmlinuz",
  "initrd",
];
/** pxelinux's other config names (01-<mac>, a hex-IP prefix), which must not reveal more either. */
const probedNames = ["pxelinux.cfg/01-52-54-00-77-00-01", "pxelinux.cfg/0A4D0001", "pxelinux.cfg/0A"];
const httpNames = [
  "mbr.img",
  "boot.img",
  "root.img",
  "backup.tar.gz",
  "manifest.json",
  "credentials",
  "trusted-keys",
];

interface Exit {
  code: number;
  output: string;
}

let fetchCount = 0;

/** Runs a client in the namespace: its exit code and output, never a rejection. */
async function clientRun(ns: Netns, command: string, args: string[]): Promise<Exit> {
  try {
    const result = await ns.exec(command, args, { timeoutMs: 30_000 });
    return { code: 0, output: result.stdout + result.stderr };
  } catch (error) {
    const cause = (error as { cause?: { code?: unknown; stdout?: string; stderr?: string } }).cause;
    return { code: Number(cause?.code ?? -1), output: `${cause?.stdout ?? ""}${cause?.stderr ?? ""}` };
  }
}

/** A file fetched by a client into a scratch file: the client's exit and the bytes that arrived. */
async function fetched(
  work: string,
  ns: Netns,
  command: string,
  args: (out: string) => string[],
): Promise<Exit & { body: Buffer }> {
  fetchCount += 1;
  const out = path.join(work, `fetched-${fetchCount}`);
  const exit = await clientRun(ns, command, args(out));
  const body = await readFile(out).catch(() => Buffer.alloc(0));
  await rm(out, { force: true });
  return { ...exit, body };
}

const curlTftp = (work: string, ns: Netns, name: string) =>
  fetched(work, ns, "curl", (out) => [
    "-sS",
    "--tftp-blksize",
    "1468",
    "-o",
    out,
    `tftp://${server}/${name}`,
  ]);

const tftpHpa = (work: string, ns: Netns, name: string) =>
  fetched(work, ns, "tftp", (out) => ["-m", "octet", server, "-c", "get", name, out]);

async function curlHttp(
  work: string,
  ns: Netns,
  url: string,
  extra: string[] = [],
): Promise<{ status: number; body: Buffer }> {
  const result = await fetched(work, ns, "curl", (out) => [
    "-sS",
    "--path-as-is",
    "-o",
    out,
    "-w",
    "%{http_code}",
    ...extra,
    url,
  ]);
  return { status: Number(result.output.trim().slice(-3)), body: result.body };
}

test(
  "the token and the images reach only the locked unit; nothing served reveals a key or another unit's password",
  { timeout: 60_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["ip", "curl", "tftp", "busybox"]))) return;
    const work = await scratchDir(t, "lock");
    const images = await fakeImages(work);
    const backup = path.join(work, "backup.tar.gz");
    await writeFile(backup, randomBytes(4096));

    // The workstation's secrets: the fleet's private key, this unit's
    // password, another unit's and gokrazy's global one.
    const xdg = path.join(work, "xdg");
    const secret = (label: string) => `${label}-${randomBytes(12).toString("hex")}`;
    const privateKey = secret("PRIVATE-KEY");
    const thisPassword = secret("this-unit");
    const otherPasswords = [secret("other-unit"), secret("global")];
    await mkdir(path.join(xdg, "rtr7/keys"), { recursive: true });
    await writeFile(
      path.join(xdg, "rtr7/keys/signing.key"),
      `-----BEGIN PRIVATE KEY-----\n${privateKey}\n-----END PRIVATE KEY-----\n`,
      { mode: 0o600 },
    );
    for (const [file, password] of [
      [`gokrazy/hosts/${hostname}/http-password.txt`, thisPassword],
      ["gokrazy/hosts/other-unit/http-password.txt", otherPasswords[0]],
      ["gokrazy/http-password.txt", otherPasswords[1]],
    ] as const) {
      await mkdir(path.dirname(path.join(xdg, file)), { recursive: true });
      await writeFile(path.join(xdg, file), `${password}\n`, { mode: 0o600 });
    }
    const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: xdg };
    delete env.RTR7_PASSWORD;

    const [serverNs, unitNs, intruderNs] = await namespacesFor(t, "locksrv", "lockunit", "lockother");
    assert.ok(serverNs && unitNs && intruderNs);
    await addBridge(serverNs, "br0");
    await serverNs.addAddress("br0", `${server}/24`);
    await plugIntoBridge(serverNs, "br0", "punit", unitNs, { device: "eth0" });
    await plugIntoBridge(serverNs, "br0", "pother", intruderNs, { device: "eth0" });
    await setMac(unitNs, "eth0", unitMac);
    await setMac(intruderNs, "eth0", intruderMac);
    await intruderNs.addAddress("eth0", `${intruderAddress}/24`);

    const recover = serverNs.start(
      process.execPath,
      recoverArgs({
        interfaceName: "br0",
        hostname,
        images,
        extra: ["--json", `--backup=${backup}`],
      }),
      { env },
    );
    await recover.waitForLine(/"event":"start"/, 30_000);

    await t.test("before any ACK nobody is served, not even a host with the unit's address", async () => {
      assert.equal((await curlTftp(work, intruderNs, "pxelinux.cfg/default")).code, 69);
      await unitNs.addAddress("eth0", `${unitAddress}/24`);
      const early = await curlTftp(work, unitNs, "pxelinux.cfg/default");
      assert.equal(early.code, 69, early.output);
      assert.equal((await curlHttp(work, unitNs, `${base}/root.img`)).status, 403);
      const refusals = jsonEvents(recover.output()).filter((event) => event.event === "tftp-refused");
      assert.ok(
        refusals.some((event) => /no DHCP ACK/.test(String(event.msg))),
        recover.output(),
      );
    });

    await t.test("the unit's PXE DHCP takes the lock; the other MAC gets no lease", async () => {
      assert.equal(await pxeDhcp(t, unitNs, "eth0"), unitAddress);
      assert.equal(await pxeDhcp(t, intruderNs, "eth0", { tries: 2 }), undefined);
    });

    let token = "";
    await t.test(
      "the locked unit gets pxelinux.cfg/default with the token, over curl and tftp-hpa",
      async () => {
        const config = await curlTftp(work, unitNs, "pxelinux.cfg/default");
        assert.equal(config.code, 0, config.output);
        token = /rtr7\.token=([0-9a-f]+)/.exec(config.body.toString())?.[1] ?? "";
        assert.match(token, /^[0-9a-f]{32}$/);
        const again = await tftpHpa(work, unitNs, "pxelinux.cfg/default");
        assert.ok(again.body.equals(config.body), again.output);
      },
    );

    await t.test("another MAC's address: TFTP access violation for every name, no token", async () => {
      for (const name of [...tftpNames, ...probedNames]) {
        const refused = await curlTftp(work, intruderNs, name);
        assert.equal(refused.code, 69, `${name}: curl exit ${refused.code} ${refused.output}`);
        assert.equal(refused.body.length, 0, name);
      }
      const hpa = await tftpHpa(work, intruderNs, "pxelinux.cfg/default");
      assert.match(hpa.output, /Error code 2: Access violation/);
      assert.ok(!hpa.body.toString().includes(token) && !hpa.output.includes(token));
      const refusals = jsonEvents(recover.output()).filter(
        (event) => event.event === "tftp-refused" && String(event.peer).startsWith(`${intruderAddress}:`),
      );
      assert.ok(refusals.length >= tftpNames.length + probedNames.length + 1, recover.output());
      assert.ok(refusals.every((event) => event.code === "RTR7_ERR_RECOVERY_PEER"));
    });

    await t.test(
      "another MAC's address: HTTP 403 with rtr7's error for every image and the password",
      async () => {
        for (const name of httpNames) {
          for (const extra of [[], ["-I"], ["-H", `Authorization: Bearer ${token}`]]) {
            const refused = await curlHttp(work, intruderNs, `${base}/${name}`, extra);
            assert.equal(refused.status, 403, `${name} ${extra.join(" ")}`);
            if (extra[0] === "-I") continue;
            const body = JSON.parse(refused.body.toString()) as { code: string; message: string };
            assert.equal(body.code, "RTR7_ERR_RECOVERY_PEER", name);
            assert.match(body.message, new RegExp(`from ${intruderAddress.replace(/\./g, "\\.")}`));
            assert.ok(!refused.body.toString().includes(thisPassword));
          }
        }
        const logged = jsonEvents(recover.output()).filter(
          (event) => event.code === "RTR7_ERR_RECOVERY_PEER" && event.peer === intruderAddress,
        );
        assert.ok(logged.length >= httpNames.length, recover.output());
      },
    );

    const everything: Buffer[] = [];
    await t.test(
      "the unit is served on: every name, and traversal and guessed names find nothing",
      async () => {
        for (const name of tftpNames) everything.push((await curlTftp(work, unitNs, name)).body);
        const root = await curlHttp(work, unitNs, `${base}/root.img`);
        assert.equal(root.status, 200);
        assert.ok(root.body.equals(await readFile(images.root)));
        const auth = ["-H", `Authorization: Bearer ${token}`];
        for (const name of httpNames) {
          const got = await curlHttp(work, unitNs, `${base}/${name}`, auth);
          assert.equal(got.status, 200, name);
          everything.push(got.body);
        }
        const guesses = [
          "../",
          "..",
          "../../../../etc/passwd",
          "/etc/shadow",
          `${xdg}/rtr7/keys/signing.key`,
          "rtr7/keys/signing.key",
          "keys/signing.key",
          "../xdg/rtr7/keys/signing.key",
          "pxelinux.cfg/../../xdg/rtr7/keys/signing.key",
          "~/.config/gokrazy/http-password.txt",
          `${xdg}/gokrazy/hosts/other-unit/http-password.txt`,
          "gokrazy/hosts/other-unit/http-password.txt",
          ".config/gokrazy/http-password.txt",
          "http-password.txt",
          "signing.key",
        ];
        for (const name of guesses) {
          const overTftp = await curlTftp(work, unitNs, name);
          assert.notEqual(overTftp.code, 0, `TFTP ${name} was served`);
          everything.push(overTftp.body);
          const overHttp = await curlHttp(work, unitNs, `${base}/${name.replace(/^\//, "")}`, auth);
          assert.equal(overHttp.status, 404, `HTTP ${name}`);
          everything.push(overHttp.body);
        }
        for (const url of [
          "%2e%2e/xdg/rtr7/keys/signing.key",
          "credentials?hostname=other-unit",
          "credentials/other-unit",
          "manifest.json.minisig",
        ]) {
          const got = await curlHttp(work, unitNs, `${base}/${url}`, auth);
          everything.push(got.body);
        }
        const all = Buffer.concat(everything).toString("latin1");
        assert.ok(!all.includes(privateKey) && !all.includes("PRIVATE KEY"), "a private key was served");
        for (const password of otherPasswords)
          assert.ok(!all.includes(password), "another password was served");
        assert.ok(all.includes(thisPassword), "the unit did not get its own password");
        assert.ok(!recover.output().includes(thisPassword), "the password reached the log");
      },
    );

    const success = await curlHttp(work, unitNs, `${base}/success`, [
      ...["-X", "POST", "-H", `Authorization: Bearer ${token}`],
    ]);
    assert.equal(success.status, 200);
    assert.equal(await recover.exited(20_000), 0, recover.output());
  },
);
