// Bundles compiled recovery-init into the one file the unit's kernel runs as
// rdinit: `#!/bin/node` then every module it imports, so the initramfs needs
// no node_modules. The file has no extension (/rtr7-recovery-init), which
// node treats as CommonJS unless it detects ES module syntax (unflagged in
// node 20.19 and 22.7); an ES module is what allows top-level await. So the
// node that goes into the initramfs is probed, and an older one gets a
// CommonJS bundle instead (which works as long as the entry has no
// top-level await). bundleNodeProgram does the same for any entry (the
// unit's /rtr7/init in the root image); bundleRecoveryInit names recovery-init.
import { execFile } from "node:child_process";
import { access, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { build, type BuildFailure } from "esbuild";
import { Rtr7Error, type ErrorCode } from "../../../lib/errors.js";

const run = promisify(execFile);

export type BundleFormat = "esm" | "cjs";

/** Where node sits in the initramfs: the bundle's interpreter. */
export const initInterpreter = "/bin/node";

export interface NodeFacts {
  /** process.versions.node of that binary, e.g. "20.20.2". */
  version: string;
  /** Whether it runs an extensionless file with ES module syntax as a module. */
  runsExtensionlessEsm: boolean;
}

/** Runs `node` on a probe like the bundle: extensionless, imports, top-level await. */
export async function nodeFacts(node: string): Promise<NodeFacts> {
  const dir = await mkdtemp(path.join(tmpdir(), "rtr7-node-probe-"));
  try {
    const probe = path.join(dir, "probe");
    await writeFile(
      probe,
      'import { versions } from "node:process";\nawait null;\nconsole.log(versions.node);\n',
    );
    try {
      const { stdout } = await run(node, [probe], { encoding: "utf8", timeout: 30_000 });
      return { version: stdout.trim(), runsExtensionlessEsm: true };
    } catch {
      const { stdout } = await run(node, ["-p", "process.versions.node"], {
        encoding: "utf8",
        timeout: 30_000,
      });
      return { version: stdout.trim(), runsExtensionlessEsm: false };
    }
  } catch (cause) {
    throw new Rtr7Error("RTR7_ERR_INITRAMFS_BUILD", `run ${node} to learn its version: it does not start`, {
      cause,
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// An ES module bundle has no `require`; esbuild's shim for CommonJS
// dependencies that require node built-ins needs a real one.
const esmRequireBanner =
  'import { createRequire as __rtr7CreateRequire } from "node:module";\n' +
  "const require = __rtr7CreateRequire(import.meta.url);";

/** What bundleNodeProgram says in its errors, and the name esbuild gives the output. */
export interface NodeProgramBundle {
  /** What is bundled, for messages: "recovery-init", "the router suite". */
  what: string;
  /** The output file name esbuild works with (nothing is written). */
  outfile: string;
  /** Catalogue code of a failed bundle. */
  errorCode: ErrorCode;
  /** Hint when the entry file does not exist (usually: build first). */
  missingEntryHint: string;
  /** Where the bundle goes, for the hint about old nodes: "the initramfs", "the root image". */
  into: string;
}

/**
 * `entry` and everything it imports as one executable file for the node at
 * /bin/node: `#!/bin/node`, then the bundle.
 */
export async function bundleNodeProgram(
  entry: string,
  format: BundleFormat,
  program: NodeProgramBundle,
): Promise<Buffer> {
  try {
    await access(entry);
  } catch (cause) {
    throw new Rtr7Error("RTR7_ERR_FILE_MISSING", `bundle ${program.what}: no entry file ${entry}`, {
      cause,
      hint: program.missingEntryHint,
    });
  }
  let code: Uint8Array;
  try {
    const result = await build({
      entryPoints: [entry],
      bundle: true,
      platform: "node",
      format,
      target: "node20",
      write: false,
      outfile: program.outfile,
      // Comments in the bundle name files relative to this directory; fixing
      // it keeps the bytes (and so the cache key) independent of the cwd.
      absWorkingDir: path.dirname(path.resolve(entry)),
      banner: format === "esm" ? { js: esmRequireBanner } : {},
      logLevel: "silent",
    });
    const output = result.outputFiles?.[0];
    if (!output) throw new Error("esbuild wrote no output file");
    code = output.contents;
  } catch (cause) {
    const errors = (cause as Partial<BuildFailure>).errors ?? [];
    const first = errors[0];
    const where = first?.location ? ` at ${first.location.file}:${first.location.line}` : "";
    const why = first ? `${first.text}${where}` : String(cause);
    throw new Rtr7Error(program.errorCode, `bundle ${program.what} from ${entry} (${format}): ${why}`, {
      cause,
      // A CommonJS bundle is made only for a node too old for an ES module
      // one, and what it cannot hold (top-level await) is the usual failure.
      hint:
        format === "cjs"
          ? `The node going into ${program.into} is older than 20.19, so ${program.what} was bundled as CommonJS, which cannot hold a top-level await: give the builder a newer node, or fix what the message names.`
          : undefined,
    });
  }
  // The entry's own hashbang (if any) names the workstation's node; the
  // unit's node is at /bin/node.
  let text = Buffer.from(code).toString("utf8");
  if (text.startsWith("#!")) text = text.slice(text.indexOf("\n") + 1);
  return Buffer.from(`#!${initInterpreter}\n${text}`);
}

/** The executable text of /rtr7-recovery-init. */
export async function bundleRecoveryInit(entry: string, format: BundleFormat): Promise<Buffer> {
  return bundleNodeProgram(entry, format, {
    what: "recovery-init",
    outfile: "rtr7-recovery-init.js",
    errorCode: "RTR7_ERR_INITRAMFS_BUILD",
    into: "the initramfs",
    missingEntryHint:
      "Run `npm run build` first, which compiles recovery-init/main.ts to dist/recovery-init/main.js.",
  });
}
