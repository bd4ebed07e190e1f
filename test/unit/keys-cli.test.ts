// `rtr7 keys init | show | rotate | sign` through the CLI, in a workstation
// of its own (XDG_CONFIG_HOME): the key's files and modes, init never
// overwriting a key, the rotation statement that Debian's minisign checks
// with the old public key, and a release signed after it was built keeping
// its build time as its release time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { run, haveTool } from "../../lab/processes.js";
import { parsePublicKey } from "../../lib/trust/minisign.js";
import { verifyManifest, verifyRotation } from "../../lib/trust/release-signature.js";
import { runCli } from "../helpers/image-build-fixture.js";
import { jsonEvents, scratchDir } from "../helpers/scratch.js";

const skip = (await haveTool("minisign")) ? false : "needs minisign (Debian's): run scripts/setup.sh";

test("keys init, show, rotate and sign", { skip }, async (t) => {
  const config = await scratchDir(t, "keys");
  const env = { ...process.env, XDG_CONFIG_HOME: config };
  const keys = path.join(config, "rtr7", "keys");

  const made = await runCli(["keys", "init", "--json"], env);
  assert.equal(made.code, 0, made.stderr);
  const first = jsonEvents(made.stdout).find((event) => event.event === "key")?.keyId as string;
  assert.match(first, /^[0-9A-F]{16}$/);
  assert.equal((await stat(keys)).mode & 0o777, 0o700);
  assert.equal((await stat(path.join(keys, "signing.key"))).mode & 0o777, 0o600);
  const firstPub = await readFile(path.join(keys, "signing.pub"), "utf8");
  assert.equal(parsePublicKey(firstPub, "signing.pub").keyId, first);

  // A second init refuses, and the key is untouched.
  const keyBefore = await readFile(path.join(keys, "signing.key"), "utf8");
  const again = await runCli(["keys", "init"], env);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already holds key .* never overwritten/);
  assert.equal(await readFile(path.join(keys, "signing.key"), "utf8"), keyBefore);

  const rotated = await runCli(["keys", "rotate", "--json"], env);
  assert.equal(rotated.code, 0, rotated.stderr);
  const second = jsonEvents(rotated.stdout).find((event) => event.event === "key")?.keyId as string;
  assert.notEqual(second, first);
  const [statement] = (await readdir(path.join(keys, "rotations"))).filter((name) => name.endsWith(".pub"));
  assert.equal(statement, `0001-${second}.pub`);
  const statementFile = path.join(keys, "rotations", statement);
  // The old key introduces the new one, checkable from outside ...
  await writeFile(path.join(config, "old.pub"), firstPub);
  const checked = await run("minisign", ["-V", "-m", statementFile, "-p", path.join(config, "old.pub")]);
  assert.match(checked.stdout, new RegExp(`rtr7-rotation:${second}\\treplaces:${first}`));
  // ... and by rtr7's own check.
  const verified = verifyRotation(
    {
      publicKey: await readFile(statementFile, "utf8"),
      signature: await readFile(`${statementFile}.minisig`, "utf8"),
    },
    [parsePublicKey(firstPub, "old")],
  );
  assert.equal(verified.newKey.keyId, second);
  assert.deepEqual((await readdir(path.join(keys, "retired"))).sort(), [`${first}.key`, `${first}.pub`]);

  const shown = await runCli(["keys", "show", "--json"], env);
  const state = jsonEvents(shown.stdout).find((event) => event.event === "key");
  assert.equal(state?.keyId, second);
  assert.deepEqual(state?.history, [first, second]);

  // A release built before the key: signed later, with its build time.
  const release = path.join(config, "release");
  await run("mkdir", ["-p", release]);
  const buildTime = "2026-11-30T10:00:00.000Z";
  const manifest = `${JSON.stringify({ anyUnit: true, version: "v7", buildTime, images: [] })}\n`;
  await writeFile(path.join(release, "manifest.json"), manifest);
  const signed = await runCli(["keys", "sign", release], env);
  assert.equal(signed.code, 0, signed.stderr);
  const release7 = verifyManifest(
    Buffer.from(manifest),
    await readFile(path.join(release, "manifest.json.minisig"), "utf8"),
    [parsePublicKey(await readFile(path.join(keys, "signing.pub"), "utf8"), "pub")],
  );
  assert.equal(release7.signedAtMs, Date.parse(buildTime));
  assert.equal(release7.keyId, second);
});

test("keys show without a key says how to make one", async (t) => {
  const config = await scratchDir(t, "keys");
  const shown = await runCli(["keys", "show"], { ...process.env, XDG_CONFIG_HOME: config });
  assert.equal(shown.code, 1);
  assert.match(shown.stderr, /no signing key .*\n.*rtr7 keys init/);
});
