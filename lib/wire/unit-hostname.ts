// The unit's hostname, kept on /perm so that one fleet release (built
// without --hostname) serves every unit: recovery writes /perm/hostname (one
// line, from rtr7.hostname on its kernel command line); the unit's init reads
// it once /perm is mounted, before the build's own hostname. A per-host build
// names the unit in build.json as gokrazy's builds do; a unit with neither is
// "rtr7".
import { checkedHostname } from "./names.js";

/** The file on /perm. */
export const permHostnameFile = "hostname";

/** What a unit with no hostname anywhere calls itself. */
export const fallbackHostname = "rtr7";

/** The file's content for `hostname`. */
export function hostnameFileText(hostname: string): string {
  return `${checkedHostname(hostname)}\n`;
}

/**
 * The hostname in the file's text: its first line, trimmed; undefined when
 * that is empty or not a host name.
 */
export function parseHostnameFile(text: string): string | undefined {
  const line = (text.split(/\r?\n/)[0] ?? "").trim();
  if (line === "") return undefined;
  try {
    return checkedHostname(line);
  } catch {
    return undefined;
  }
}
