// The rtr7 command as a user meets it: help with examples for every command,
// usage errors as one line with a hint and exit code 2, and JSON errors with
// a stable code under --json.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cliEntry } from "../helpers/paths.js";

function rtr7(...args: string[]) {
  const result = spawnSync(process.execPath, [cliEntry, ...args], { encoding: "utf8", timeout: 30_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** rtr7 recover with stand-in files for every file flag, --json, and the given flags. */
function recoverWith(...flags: string[]) {
  const file = "/etc/hostname";
  return rtr7(
    "recover",
    "--hostname=unit",
    ...["initrd", "mbr", "boot", "root"].map((flag) => `--${flag}=${file}`),
    ...flags,
    "--json",
  );
}

test("rtr7 --help lists the commands, and each command's help has examples", () => {
  const top = rtr7("--help");
  assert.equal(top.code, 0);
  for (const command of ["recover", "reset", "console"]) {
    assert.match(top.stdout, new RegExp(`^\\s+${command}\\s`, "m"));
    const help = rtr7(command, "--help");
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /EXAMPLES/);
    assert.match(help.stdout, /--json/);
  }
});

test("usage errors print one line with a hint and exit 2", () => {
  const missing = rtr7("recover", "--initrd", "/nonexistent/initrd", "--hostname", "x");
  assert.equal(missing.code, 2);
  assert.match(
    missing.stderr,
    /^rtr7: Parsing --initrd: No file found at \/nonexistent\/initrd\n {2}hint: Run `rtr7 recover --help`/,
  );
  const unknown = rtr7("recover", "--bogus", "--json");
  assert.equal(unknown.code, 2);
  const event = JSON.parse(unknown.stdout.trim()) as { code: string; msg: string; hint: string };
  assert.equal(event.code, "RTR7_ERR_USAGE");
  assert.match(event.msg, /--bogus/);
});

test("a --disk that is no disk name is refused before anything starts", () => {
  const result = recoverWith("--interface=lo", "--disk=sda1 rtr7.token=x");
  assert.equal(result.code, 2);
  const event = JSON.parse(result.stdout.trim().split("\n").pop() ?? "{}") as { code: string; msg: string };
  assert.equal(event.code, "RTR7_ERR_USAGE");
  assert.match(event.msg, /--disk/);
});

test("an rtr7 error keeps its catalogue code and exits 1", () => {
  const result = recoverWith("--interface=no-such-interface0");
  assert.equal(result.code, 1);
  const event = JSON.parse(result.stdout.trim().split("\n").pop() ?? "{}") as { code: string };
  assert.equal(event.code, "RTR7_ERR_INTERFACE_NOT_FOUND");
});

test("the shared --hostname flag is checked the same way by every command that takes it", () => {
  for (const command of [
    ["recover"],
    ["safe-update"],
    ["image", "build"],
    ["lab", "unit", "--dir=/nonexistent"],
  ]) {
    const result = rtr7(...command, "--hostname=unit rtr7.disk=sda", "--json");
    assert.equal(result.code, 2, `${command.join(" ")}: ${result.stdout}${result.stderr}`);
    const event = JSON.parse(result.stdout.trim().split("\n").pop() ?? "{}") as { code: string; msg: string };
    assert.equal(event.code, "RTR7_ERR_USAGE");
    assert.match(event.msg, /^Parsing --hostname: hostname "unit rtr7\.disk=sda": want a host name/);
  }
});

test("--mac is checked while the flags are parsed", () => {
  const result = recoverWith("--interface=lo", "--mac=52:54:00:12:34");
  assert.equal(result.code, 2);
  const event = JSON.parse(result.stdout.trim().split("\n").pop() ?? "{}") as { code: string; msg: string };
  assert.match(event.msg, /^Parsing --mac: MAC address "52:54:00:12:34"/);
});
