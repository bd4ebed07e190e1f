// Namespaces in tests: the lab's helpers (lab/netns.ts) plus the glue that
// skips a test that cannot run here and removes what it made when it ends.
import type { TestContext } from "node:test";
import { Netns } from "../../lab/netns.js";
import { haveTool } from "../../lab/processes.js";

export { Netns, joinWithVeth } from "../../lab/netns.js";

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/**
 * Skips the test (with the reason) unless it runs as root with every tool
 * present. Returns true when the test may go on.
 */
export async function requireRootAndTools(t: TestContext, tools: string[]): Promise<boolean> {
  if (!isRoot()) {
    t.skip("needs root: network namespaces and privileged ports");
    return false;
  }
  for (const tool of tools) {
    if (!(await haveTool(tool))) {
      t.skip(`needs ${tool}: run scripts/setup.sh`);
      return false;
    }
  }
  return true;
}

/** Builds namespaces for a test and registers their removal with t.after. */
export async function namespacesFor(t: TestContext, ...labels: string[]): Promise<Netns[]> {
  const made: Netns[] = [];
  t.after(async () => {
    await Promise.all(made.map((ns) => ns.destroy()));
  });
  for (const label of labels) made.push(await Netns.create(label));
  return made;
}
