// The running image's /etc/rtr7/build.json (written by `rtr7 image build`),
// and the unit's hostname. A per-host build names its unit in build.json; a
// fleet release (`"anyUnit": true`) names none, and every unit takes its
// name from /perm/hostname, which recovery writes (lib/wire/unit-hostname.ts).
// /perm/hostname wins when it holds a host name, so a unit keeps its name
// whichever kind of release it runs; then the caller's override (process
// mode's --hostname), then build.json, then "rtr7".
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fallbackHostname, parseHostnameFile, permHostnameFile } from "../lib/wire/unit-hostname.js";

export interface BuildInfo {
  /** Absent in a fleet release. */
  hostname?: string;
  anyUnit?: boolean;
  version: string;
  kernelRelease?: string;
  nodeVersion?: string;
}

export async function readBuildInfo(etc: string): Promise<BuildInfo> {
  const file = path.join(etc, "build.json");
  try {
    const parsed = JSON.parse(await readFile(file, "utf8")) as Partial<BuildInfo>;
    const info: BuildInfo = { ...parsed, version: parsed.version ?? "unknown" };
    if (typeof info.hostname !== "string" || info.hostname === "") delete info.hostname;
    return info;
  } catch {
    return { version: "unknown" };
  }
}

export interface UnitHostname {
  hostname: string;
  /** Where it came from: "/perm/hostname" (its path), "flag", "build.json" or "default". */
  source: string;
  /** Set when /perm/hostname exists but holds no host name. */
  problem?: string;
}

/** The unit's hostname: /perm/hostname, else `override`, else build.json's, else "rtr7". */
export async function unitHostname(perm: string, build: BuildInfo, override?: string): Promise<UnitHostname> {
  const file = path.join(perm, permHostnameFile);
  let problem: string | undefined;
  try {
    const text = await readFile(file, "utf8");
    const named = parseHostnameFile(text);
    if (named !== undefined) return { hostname: named, source: file };
    problem = `${file} holds no host name (${JSON.stringify(text.slice(0, 64))}); ignoring it`;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOENT") problem = `${file}: ${code ?? String(error)}; ignoring it`;
  }
  const extra = problem === undefined ? {} : { problem };
  if (override !== undefined && override !== "") return { hostname: override, source: "flag", ...extra };
  if (build.hostname !== undefined) return { hostname: build.hostname, source: "build.json", ...extra };
  return { hostname: fallbackHostname, source: "default", ...extra };
}
