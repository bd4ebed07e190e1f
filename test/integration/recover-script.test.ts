// recover.bash run by bash from another working directory, in a run
// directory whose path has spaces (and a quote), through a symlink too:
// with RTR7 pointing at a stand-in that prints its argv and cwd as JSON, the
// script runs `recover` with the hostname and the images by name, from its
// own directory, adds --backup only when backup.tar.gz is there, and passes
// extra arguments on. Without RTR7 it runs the node and CLI entry it was
// written with. A failed run's script prints its warning first, quoted so
// that nothing in it is run.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { writeRecoverScript } from "../../updates/recover-script.js";
import { scratchDir } from "../helpers/scratch.js";

const execFileAsync = promisify(execFile);

interface Seen {
  argv: string[];
  cwd: string;
}

async function runScript(
  script: string,
  cwd: string,
  env: NodeJS.ProcessEnv,
  args: string[] = [],
): Promise<Seen> {
  const { stdout } = await execFileAsync("bash", [script, ...args], { cwd, env: { ...process.env, ...env } });
  return JSON.parse(stdout) as Seen;
}

test("recover.bash runs rtr7 recover from its own directory with this run's images", async (t) => {
  const scratch = await scratchDir(t, "recover-script");
  const runDir = path.join(scratch, "updates dir", "it's lab1", "2024-01-01T00-00-00Z");
  await mkdir(runDir, { recursive: true });
  const elsewhere = path.join(scratch, "elsewhere");
  await mkdir(elsewhere);
  const printer = path.join(scratch, "print args.js");
  await writeFile(
    printer,
    `#!${process.execPath}\nconsole.log(JSON.stringify({ argv: process.argv.slice(2), cwd: process.cwd() }));\n`,
  );
  await chmod(printer, 0o755);

  const script = await writeRecoverScript(runDir, {
    hostname: "lab1",
    cli: { node: process.execPath, entry: printer },
  });
  assert.equal(script, path.join(runDir, "recover.bash"));
  assert.equal((await stat(script)).mode & 0o777, 0o755);
  const text = await readFile(script, "utf8");
  assert.match(text, /^#!\/usr\/bin\/env bash\n#/);
  assert.match(text, /set -euo pipefail/);

  const base = [
    "recover",
    "--hostname",
    "lab1",
    "--mbr",
    "mbr.img",
    "--boot",
    "boot.img",
    "--root",
    "root.img",
  ];
  const viaEnv = await runScript(script, elsewhere, { RTR7: printer });
  assert.deepEqual(viaEnv, { argv: base, cwd: runDir });

  await writeFile(path.join(runDir, "backup.tar.gz"), "");
  const extra = ["--interface", "eth 1", "--serial=/dev/ttyUSB0"];
  const withBackup = await runScript(script, elsewhere, { RTR7: printer }, extra);
  assert.deepEqual(withBackup, { argv: [...base, "--backup", "backup.tar.gz", ...extra], cwd: runDir });

  // Through a symlink elsewhere, it still works in the run directory.
  const link = path.join(elsewhere, "recover-lab1.bash");
  await symlink(script, link);
  assert.deepEqual(await runScript(link, scratch, { RTR7: printer }), {
    argv: [...base, "--backup", "backup.tar.gz"],
    cwd: runDir,
  });

  // Without RTR7: node runs the entry the script was written with.
  const direct = await runScript(script, elsewhere, { RTR7: "" }, ["--json"]);
  assert.deepEqual(direct, { argv: [...base, "--backup", "backup.tar.gz", "--json"], cwd: runDir });

  // A failed run's script says so on stderr before it recovers.
  await writeRecoverScript(runDir, {
    hostname: "lab1",
    cli: { node: process.execPath, entry: printer },
    warning: "these are the images of a failed update to v3 (it's $(unhealthy)).\nUse /updates/good.",
  });
  const warned = await execFileAsync("bash", [script], {
    cwd: elsewhere,
    env: { ...process.env, RTR7: printer },
  });
  assert.equal(
    warned.stderr,
    "recover.bash: warning: these are the images of a failed update to v3 (it's $(unhealthy)). Use /updates/good.\n",
  );
  assert.deepEqual(JSON.parse(warned.stdout), { argv: [...base, "--backup", "backup.tar.gz"], cwd: runDir });
});
