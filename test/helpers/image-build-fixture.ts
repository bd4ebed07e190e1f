// What the image-build tests share: the inputs (a kernel, a stand-in for the
// router suite, files to --add), one library build per hostname and one CLI
// build, shared by every test of a process, and small readers of the results.
import { after, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { run } from "../../lab/processes.js";
import type { Manifest } from "../../lib/wire/manifest.js";
import { buildUnitImages } from "../../updates/image/build.js";
import { hostKernel } from "./host-kernel.js";
import { requireRootAndTools } from "./netns.js";
import { cliEntry } from "./paths.js";
import { jsonEvents } from "./scratch.js";

export const tools = ["mksquashfs", "unsquashfs", "mkfs.fat", "mcopy", "mtype", "mdir", "syslinux", "kexec"];
export const hostname = "image-test";
export const marker = "image-build test stand-in for the router suite";
// A stand-in for dist/router/main.js, so the test does not depend on the suite's state.
export const standIn = `await null;\nconsole.log(${JSON.stringify(marker)}, process.argv.slice(2));\n`;
export const images = ["mbr.img", "boot.img", "root.img"] as const;

export interface Inputs {
  work: string;
  kernel: string;
  routerEntry: string;
  addFile: string;
  addDir: string;
  add: { source: string; destination: string }[];
}

let inputsPromise: Promise<Inputs> | undefined;
const made: string[] = [];
after(() => Promise.all(made.map((dir) => rm(dir, { recursive: true, force: true }))));

export function inputs(): Promise<Inputs> {
  inputsPromise ??= (async () => {
    const host = hostKernel();
    if (host.missing !== undefined) throw new Error(host.missing);
    const work = await mkdtemp(path.join(tmpdir(), "rtr7-image-build-"));
    made.push(work);
    const routerEntry = path.join(work, "stand-in.mjs");
    await writeFile(routerEntry, standIn);
    const addFile = path.join(work, "extra.txt");
    await writeFile(addFile, "added by --add\n");
    const addDir = path.join(work, "site");
    await mkdir(path.join(addDir, "conf"), { recursive: true });
    await writeFile(path.join(addDir, "conf", "site.json"), '{"site":true}\n');
    await symlink("conf/site.json", path.join(addDir, "current.json"));
    return {
      work,
      kernel: host.kernel,
      routerEntry,
      addFile,
      addDir,
      add: [
        { source: addFile, destination: "/etc/rtr7/extra.txt" },
        { source: addDir, destination: "/opt/site" },
      ],
    };
  })();
  return inputsPromise;
}

/** One library build per hostname, shared by the tests. */
const builds = new Map<string, Promise<{ dir: string; manifest: Manifest; version: string }>>();
export function libraryBuild(name = hostname) {
  let build = builds.get(name);
  if (!build) {
    build = (async () => {
      const input = await inputs();
      const dir = path.join(input.work, `lib-${name}`);
      const result = await buildUnitImages({
        outDir: dir,
        hostname: name,
        kernel: input.kernel,
        add: input.add,
        routerEntry: input.routerEntry,
      });
      return { dir, manifest: result.manifest, version: result.version };
    })();
    builds.set(name, build);
  }
  return build;
}

export function runBuffer(command: string, args: string[]): Promise<Buffer> {
  return Promise.resolve(
    execFileSync(command, args, {
      env: { ...process.env, MTOOLS_SKIP_CHECK: "1" },
      maxBuffer: 256 * 1024 * 1024,
    }),
  );
}

export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliEntry, ...args], { stdio: ["ignore", "pipe", "pipe"], env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

let cliPromise: Promise<{ dir: string; event: Record<string, unknown> }> | undefined;
export function cliBuild() {
  cliPromise ??= (async () => {
    const input = await inputs();
    const dir = path.join(input.work, "cli");
    const result = await runCli([
      "image",
      "build",
      `--out=${dir}`,
      `--hostname=${hostname}`,
      `--kernel=${input.kernel}`,
      ...input.add.map((addition) => `--add=${addition.source}:${addition.destination}`),
      `--router-entry=${input.routerEntry}`,
      "--json",
    ]);
    assert.equal(result.code, 0, `rtr7 image build failed:\n${result.stdout}\n${result.stderr}`);
    const event = jsonEvents(result.stdout).find((line) => line.event === "images");
    assert.ok(event, `no "images" event in:\n${result.stdout}`);
    return { dir, event };
  })();
  return cliPromise;
}

export async function sha256(file: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
}

export async function ready(t: TestContext): Promise<boolean> {
  if (!(await requireRootAndTools(t, tools))) return false;
  const host = hostKernel();
  if (host.missing !== undefined) {
    t.skip(host.missing);
    return false;
  }
  return true;
}

export const unsquashfsCat = async (image: string, file: string): Promise<string> =>
  (await run("unsquashfs", ["-cat", image, file])).stdout;
