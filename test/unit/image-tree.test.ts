// The image builder's pure parts: --add parsing and its refusals, what a
// directory --add contributes, how --add entries meet the root tree (a
// directory merges, diagd.json replaces the default, anything else that
// clashes is refused), and that the boot initrd's /init is valid shell.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { isRtr7Error } from "../../lib/errors.js";
import { additionEntries, checkedDestination, parseAddition } from "../../updates/image/additions.js";
import { bootInitScript } from "../../updates/image/boot-initrd.js";
import { rootTree, type RootTreeInputs } from "../../updates/image/root-tree.js";
import { scratchDir } from "../helpers/scratch.js";

const isImageBuildError = (error: unknown): boolean => isRtr7Error(error, "RTR7_ERR_IMAGE_BUILD");

test("--add SRC:DEST splits at the last colon and refuses what is not SRC:DEST", () => {
  assert.deepEqual(parseAddition("./diagd.json:/etc/rtr7/diagd.json"), {
    source: "./diagd.json",
    destination: "/etc/rtr7/diagd.json",
  });
  assert.deepEqual(parseAddition("dir:with:colons:/opt/x"), {
    source: "dir:with:colons",
    destination: "/opt/x",
  });
  for (const bad of ["no-colon", ":/etc/x", "source:"]) {
    assert.throws(() => parseAddition(bad), isImageBuildError, bad);
  }
});

test("an --add destination must be absolute and may not climb out with ..", () => {
  assert.equal(checkedDestination({ source: "x", destination: "/etc//rtr7/./x/" }), "/etc/rtr7/x/");
  for (const bad of ["etc/x", "/etc/../../x", "/..", "/a/.."]) {
    assert.throws(() => checkedDestination({ source: "x", destination: bad }), isImageBuildError, bad);
  }
});

test("a directory --add brings its files, modes, subdirectories and symlinks", async (t) => {
  const work = await scratchDir(t, "image-add");
  const source = path.join(work, "site");
  await mkdir(path.join(source, "bin"), { recursive: true });
  await writeFile(path.join(source, "bin", "tool"), "#!/bin/sh\n", { mode: 0o755 });
  await writeFile(path.join(source, "a.json"), "{}\n", { mode: 0o640 });
  await symlink("a.json", path.join(source, "link.json"));
  const entries = await additionEntries({ source, destination: "/opt/site" });
  assert.deepEqual(
    entries.map((entry) => ({
      kind: entry.kind,
      path: entry.path,
      ...(entry.kind === "symlink" ? { target: entry.target } : { mode: entry.mode }),
    })),
    [
      { kind: "directory", path: "/opt/site", mode: 0o755 },
      { kind: "file", path: "/opt/site/a.json", mode: 0o640 },
      { kind: "directory", path: "/opt/site/bin", mode: 0o755 },
      { kind: "file", path: "/opt/site/bin/tool", mode: 0o755 },
      { kind: "symlink", path: "/opt/site/link.json", target: "a.json" },
    ],
  );
  await assert.rejects(
    additionEntries({ source: path.join(work, "missing"), destination: "/x" }),
    (error: unknown) => isImageBuildError(error) && (error as Error).message.includes("missing"),
  );
});

test("--add entries merge into the root tree's directories and may replace only diagd.json", async (t) => {
  const work = await scratchDir(t, "image-tree");
  const diagd = path.join(work, "diagd.json");
  await writeFile(diagd, '{"tcp":[7733]}\n');
  // Any dynamically linked program stands in for node, mtools and kexec here.
  const base: RootTreeInputs = {
    init: Buffer.from("#!/bin/node\n"),
    node: process.execPath,
    busybox: process.execPath,
    mtools: process.execPath,
    kexec: process.execPath,
    modules: { load: [], skipped: [] },
    modulesDir: work,
    kernelRelease: "6.1.0-test",
    additions: [],
  };
  const withAdd = async (destination: string) =>
    rootTree({
      ...base,
      additions: [
        { label: `${diagd}:${destination}`, entries: await additionEntries({ source: diagd, destination }) },
      ],
    });

  const replaced = (await withAdd("/etc/rtr7/diagd.json")).entries();
  const config = replaced.filter((entry) => entry.path === "etc/rtr7/diagd.json");
  assert.equal(config.length, 1);
  assert.ok(config[0]?.kind === "file" && "source" in config[0] && config[0].source === diagd);

  const plain = (await rootTree(base)).entries();
  const defaultConfig = plain.find((entry) => entry.path === "etc/rtr7/diagd.json");
  assert.ok(defaultConfig?.kind === "file" && "data" in defaultConfig);
  assert.deepEqual(JSON.parse(defaultConfig.data.toString()), { tcp: [] });

  const etc = path.join(work, "etc");
  await mkdir(etc, { mode: 0o700 });
  await writeFile(path.join(etc, "site.conf"), "x\n");
  const merged = (
    await rootTree({
      ...base,
      additions: [
        { label: `${etc}:/etc`, entries: await additionEntries({ source: etc, destination: "/etc" }) },
      ],
    })
  ).entries();
  assert.ok(merged.some((entry) => entry.path === "etc/site.conf"));
  assert.deepEqual(
    merged.find((entry) => entry.path === "etc"),
    { kind: "directory", path: "etc", mode: 0o755 },
    "the image's /etc keeps its mode",
  );

  for (const clash of [
    "/bin/node",
    "/rtr7/init",
    "/bin/sh",
    "/etc/rtr7/build.json",
    "/etc/rtr7/modules/x",
    "/bin/node/x",
  ]) {
    await assert.rejects(withAdd(clash), isImageBuildError, clash);
  }
});

test("the boot initrd's /init is valid shell that ends in switch_root to /rtr7/init", () => {
  const script = bootInitScript();
  assert.ok(script.startsWith("#!/bin/sh\n"));
  execFileSync("sh", ["-n"], { input: script });
  assert.match(script, /exec switch_root \/newroot \/rtr7\/init\n$/);
  assert.match(script, /root=PARTUUID=\*\)/);
  assert.match(script, /od -A n -t x4 -j 440 -N 4/);
});
