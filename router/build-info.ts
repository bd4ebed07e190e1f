// The running image's /etc/rtr7/build.json (written by `rtr7 image build`).
import { readFile } from "node:fs/promises";
import path from "node:path";

export interface BuildInfo {
  hostname: string;
  version: string;
  kernelRelease?: string;
  nodeVersion?: string;
}

export async function readBuildInfo(etc: string): Promise<BuildInfo> {
  const file = path.join(etc, "build.json");
  try {
    const parsed = JSON.parse(await readFile(file, "utf8")) as Partial<BuildInfo>;
    return { ...parsed, hostname: parsed.hostname ?? "rtr7", version: parsed.version ?? "unknown" };
  } catch {
    return { hostname: "rtr7", version: "unknown" };
  }
}
