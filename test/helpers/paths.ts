// Paths inside the repository, from compiled test files (dist/test/...).
import { fileURLToPath } from "node:url";
import path from "node:path";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

export function repoPath(relative: string): string {
  return path.join(repoRoot, relative);
}

/** The rtr7 CLI entry point, for running it as a child process. */
export const cliEntry = repoPath("bin/run.js");
