// diagd.json: what else diagd checks besides the LAN link, its address and
// the gateway, e.g. `{"tcp": ["192.0.2.1:80", "[2001:db8::1]:443"]}`. The
// running image ships one in /etc/rtr7; a copy in /perm overrides it, so an
// admin can change the targets of one unit without building an image. A
// malformed file is not fatal: it becomes a failed check that names the file
// and what is wrong with it, so /health.json says why the unit is unhealthy.
import { readFile } from "node:fs/promises";
import path from "node:path";

export interface TcpTarget {
  host: string;
  port: number;
  /** As written in the file: "192.0.2.1:80". */
  text: string;
}

export interface DiagdTargets {
  tcp: TcpTarget[];
}

export interface LoadedTargets {
  /** The file the targets came from, or undefined when there is none. */
  source: string | undefined;
  targets: DiagdTargets;
  /** Why the file could not be used (then targets is empty). */
  problem: string | undefined;
}

export const targetsFileName = "diagd.json";
const wanted = 'want {"tcp": ["host:port", ...]}';

/** Reads `<perm>/diagd.json`, or else `<etc>/diagd.json`, or else no targets. */
export async function loadTargets(paths: { etc: string; perm: string }): Promise<LoadedTargets> {
  for (const dir of [paths.perm, paths.etc]) {
    const file = path.join(dir, targetsFileName);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
      return { source: file, targets: { tcp: [] }, problem: `cannot read: ${(error as Error).message}` };
    }
    try {
      return { source: file, targets: parseTargets(text), problem: undefined };
    } catch (error) {
      return { source: file, targets: { tcp: [] }, problem: (error as Error).message };
    }
  }
  return { source: undefined, targets: { tcp: [] }, problem: undefined };
}

/** Parses the text of a diagd.json; throws an Error saying what is wrong and what is wanted. */
export function parseTargets(text: string): DiagdTargets {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`not valid JSON (${(error as Error).message}); ${wanted}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new Error(`got ${Array.isArray(value) ? "an array" : JSON.stringify(value)}; ${wanted}`);
  const record = value as Record<string, unknown>;
  const unknownKeys = Object.keys(record).filter((key) => key !== "tcp");
  if (unknownKeys.length > 0) throw new Error(`unknown key ${JSON.stringify(unknownKeys[0])}; ${wanted}`);
  const tcp = record.tcp ?? [];
  if (!Array.isArray(tcp)) throw new Error(`"tcp" is ${JSON.stringify(tcp)}, not a list; ${wanted}`);
  return { tcp: tcp.map((entry: unknown) => parseTcpTarget(entry)) };
}

function parseTcpTarget(entry: unknown): TcpTarget {
  if (typeof entry !== "string")
    throw new Error(`tcp entry ${JSON.stringify(entry)} is not a string; ${wanted}`);
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(entry);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!match || !host || port < 1 || port > 65535)
    throw new Error(`tcp entry ${JSON.stringify(entry)} is not host:port (port 1-65535, [v6]:port)`);
  return { host, port, text: entry };
}
