// The folder rules of DESIGN.md as a test: a file's folder says where it
// runs, and so what it may import. Code that runs on the unit (router/, and
// recovery-init/ during a recovery) imports nothing of the workstation's
// (cli/, server/, updates/, lab/), and neither unit program imports the
// other; lib/ is the shared floor and imports from no other folder. Wire
// facts that two sides share live in lib/wire/. And a comment that names a
// file of the repository names one that exists.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { repoPath } from "../helpers/paths.js";

const sourceFolders = ["cli", "server", "lib", "router", "updates", "recovery-init", "lab", "test"] as const;
type Folder = (typeof sourceFolders)[number];

function sourceFiles(folder: string): string[] {
  const found: string[] = [];
  const walk = (relative: string): void => {
    for (const entry of readdirSync(repoPath(relative), { withFileTypes: true })) {
      const child = path.posix.join(relative, entry.name);
      if (entry.isDirectory()) walk(child);
      else if (entry.name.endsWith(".ts")) found.push(child);
    }
  };
  walk(folder);
  return found;
}

/** Every module a file imports: static imports, re-exports and dynamic import("..."). */
export function importedSpecifiers(source: string): string[] {
  const specifiers: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\b[^;]*?\bfrom\s*"([^"]+)"/gms,
    /^\s*import\s*"([^"]+)"/gm,
    /\bimport\(\s*"([^"]+)"\s*\)/g,
  ];
  for (const pattern of patterns)
    for (const match of source.matchAll(pattern)) specifiers.push(match[1] ?? "");
  return specifiers;
}

/** The top folder a relative import from `file` lands in, or undefined for a package. */
function importedFolder(file: string, specifier: string): string | undefined {
  if (!specifier.startsWith(".")) return undefined;
  const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
  return target.split("/")[0];
}

function violations(from: Folder, forbidden: readonly string[]): string[] {
  const found: string[] = [];
  for (const file of sourceFiles(from)) {
    for (const specifier of importedSpecifiers(readFileSync(repoPath(file), "utf8"))) {
      const folder = importedFolder(file, specifier);
      if (folder !== undefined && forbidden.includes(folder)) found.push(`${file} imports ${specifier}`);
    }
  }
  return found;
}

const workstation = ["cli", "server", "updates", "lab", "test"];

test("the import scanner sees static, re-exported, multi-line and dynamic imports", () => {
  const source = [
    'import { a } from "../server/a.js";',
    "import {",
    "  b,",
    '} from "../cli/b.js";',
    'export { c } from "../updates/c.js";',
    'const d = await import("../lab/d.js");',
    'import "../router/e.js";',
  ].join("\n");
  assert.deepEqual(importedSpecifiers(source).sort(), [
    "../cli/b.js",
    "../lab/d.js",
    "../router/e.js",
    "../server/a.js",
    "../updates/c.js",
  ]);
});

test("router/ (the unit's suite) imports nothing from the workstation's folders", () => {
  assert.deepEqual(violations("router", workstation), []);
});

test("recovery-init/ (the unit during a recovery) imports nothing from the workstation's folders", () => {
  assert.deepEqual(violations("recovery-init", workstation), []);
});

test("router/ and recovery-init/ do not import each other", () => {
  assert.deepEqual(violations("router", ["recovery-init"]), []);
  assert.deepEqual(violations("recovery-init", ["router"]), []);
});

test("lib/ imports from no other folder of the project", () => {
  assert.deepEqual(
    violations("lib", ["cli", "server", "router", "updates", "recovery-init", "lab", "test"]),
    [],
  );
});

test("recovery-init/ holds only what runs on the unit: its initramfs builder lives with the image builder", () => {
  assert.equal(existsSync(repoPath("recovery-init/initramfs")), false);
  assert.ok(existsSync(repoPath("updates/image/initramfs/builder.ts")));
});

test("comments name only files the repository has", () => {
  const roots = [...sourceFolders, "docs", "scripts", "patches", "bin"];
  const reference = new RegExp(
    String.raw`(?<![\w./-])((?:${roots.map((root) => root.replace("-", "\\-")).join("|")})/[\w./-]*[\w-]\.(?:ts|js|md|sh|json|patch))\b`,
    "g",
  );
  const missing: string[] = [];
  for (const folder of sourceFolders) {
    for (const file of sourceFiles(folder)) {
      const lines = readFileSync(repoPath(file), "utf8").split("\n");
      lines.forEach((line, index) => {
        const comment = line.match(/^\s*(?:\/\/|\/?\*+)(.*)$/)?.[1];
        if (comment === undefined) return;
        for (const match of comment.matchAll(reference)) {
          const named = match[1] ?? "";
          // A compiled path (dist/...) or a .js name stands for its .ts source.
          const candidates = [named, named.replace(/\.js$/, ".ts")];
          if (!candidates.some((candidate) => existsSync(repoPath(candidate))))
            missing.push(`${file}:${index + 1} names ${named}`);
        }
      });
    }
  }
  assert.deepEqual(missing, []);
});
