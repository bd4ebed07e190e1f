// recover.bash: the script safe-update leaves in each run directory, so a
// unit that no longer boots or answers can be re-imaged from that run's
// images (and its /perm restored from that run's backup) with one command,
// from anywhere, without remembering rtr7 recover's flags. The script
// changes to its own directory (symlinks resolved) and runs
// `rtr7 recover` with the images by their names there; arguments given to
// the script are passed on (--interface, --serial, ...). $RTR7 names
// another rtr7 program to run instead of the one that wrote the script
// (tests use it to see the arguments).
import { writeFileAtomically } from "../lib/atomic-file.js";
import path from "node:path";
import { Rtr7Error } from "../lib/errors.js";

export interface RecoverScriptOptions {
  hostname: string;
  /** How to start rtr7: the node binary and the CLI's entry script (absolute paths). */
  cli: { node: string; entry: string };
  /**
   * Set when this run's images did not prove healthy: the script prints it
   * before it recovers, so nobody restores a bad version unwittingly.
   */
  warning?: string;
}

/** A word for bash, single-quoted unless it is plainly safe. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

export function recoverScript(options: RecoverScriptOptions): string {
  const { hostname } = options;
  if (!/^[A-Za-z0-9][A-Za-z0-9.-]*$/.test(hostname))
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `recover.bash: hostname ${JSON.stringify(hostname)} is not a host name`,
      {
        hint: "Use the unit's host name (letters, digits, dots and dashes).",
      },
    );
  const node = path.resolve(options.cli.node);
  const entry = path.resolve(options.cli.entry);
  const warning = options.warning
    ? `echo ${shellQuote(`recover.bash: warning: ${options.warning.replace(/\s+/g, " ")}`)} >&2\n`
    : "";
  return `#!/usr/bin/env bash
# Recovers the unit ${hostname} with the images of this update run, written by
# rtr7 safe-update. Run it when ${hostname} no longer boots or answers: it
# re-images the unit over the network (PXE) with mbr.img, boot.img and
# root.img from this directory, and restores /perm from backup.tar.gz (the
# backup taken before this update) when that file is here. Run it as root on
# a workstation on the unit's LAN, from any directory; arguments are passed
# to rtr7 recover, e.g.
#   sudo ./recover.bash --interface eth1
# (rtr7 recover --help lists them). Set RTR7 to run another rtr7 program.
set -euo pipefail
cd "$(dirname "$(readlink -f "\${BASH_SOURCE[0]}")")"
${warning}
args=(recover --hostname ${shellQuote(hostname)} --mbr mbr.img --boot boot.img --root root.img)
if [[ -f backup.tar.gz ]]; then
  args+=(--backup backup.tar.gz)
fi
if [[ -n "\${RTR7:-}" ]]; then
  exec "$RTR7" "\${args[@]}" "$@"
fi
exec ${shellQuote(node)} ${shellQuote(entry)} "\${args[@]}" "$@"
`;
}

/** Writes <runDir>/recover.bash (executable, atomically) and returns its path. */
export async function writeRecoverScript(runDir: string, options: RecoverScriptOptions): Promise<string> {
  const content = recoverScript(options);
  const script = path.join(runDir, "recover.bash");
  await writeFileAtomically(script, content, { mode: 0o755 });
  return script;
}
