// A real mDNS browser (avahi) inside a network namespace a test made, so that
// what rtr7 announces is checked by the implementation users have, not by
// the library that sent it. avahi-browse asks avahi-daemon, which needs a
// D-Bus system bus; none of the host's daemons is touched: this starts a
// private dbus-daemon (its socket in a temporary directory) and an
// avahi-daemon inside the namespace with its own configuration, bound to one
// interface and told the bus's address through DBUS_SYSTEM_BUS_ADDRESS.
// avahi-daemon insists on /run/avahi-daemon (its pid file and socket), which
// would collide with a host's avahi, so it runs in a private mount namespace
// with a tmpfs over /run. Everything started is stopped by its PID.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Netns } from "./netns.js";
import { start, type Started } from "./processes.js";

/** The programs startAvahiBrowser needs (Debian: dbus-daemon, avahi-daemon, avahi-utils, util-linux). */
export const avahiTools = ["dbus-daemon", "avahi-daemon", "avahi-browse", "unshare", "mount"];

/** One line of `avahi-browse -p -r`: "+" found, "=" resolved, "-" removed. */
export interface AvahiRecord {
  event: "+" | "=" | "-";
  /** As named inside the namespace. */
  interfaceName: string;
  protocol: string;
  name: string;
  type: string;
  domain: string;
  /** The rest are only in resolved ("=") records. */
  hostname?: string;
  address?: string;
  port?: number;
  txt?: Record<string, string>;
}

export interface AvahiWatch {
  /** Every record printed so far. */
  records(): AvahiRecord[];
  /** The first record (already seen or to come) that matches. */
  waitFor(match: (record: AvahiRecord) => boolean, timeoutMs: number): Promise<AvahiRecord>;
  stop(): Promise<void>;
}

export interface AvahiBrowser {
  /** One `avahi-browse -rpt TYPE` ("_rtr7._tcp"): what avahi knows now, resolved. */
  browse(type: string, timeoutMs: number): Promise<AvahiRecord[]>;
  /** A running `avahi-browse -rp TYPE`, which also prints removals. */
  watch(type: string): AvahiWatch;
  /** Stops the browsers, avahi-daemon and dbus-daemon, and removes the temporary directory. */
  stop(): Promise<void>;
  /** avahi-daemon's output so far, for failure messages. */
  daemonOutput(): string;
}

export interface AvahiBrowserOptions {
  /** avahi's own host name; default rtr7-avahi-browser (it must differ from any announced host). */
  hostName?: string;
  startTimeoutMs?: number;
}

export async function startAvahiBrowser(
  ns: Netns,
  interfaceName: string,
  options: AvahiBrowserOptions = {},
): Promise<AvahiBrowser> {
  const dir = await mkdtemp(path.join(tmpdir(), "rtr7-avahi-"));
  const started: Started[] = [];
  const stopAll = async (): Promise<void> => {
    for (const child of started.reverse()) await child.stop();
    started.length = 0;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const socket = path.join(dir, "system_bus_socket");
    const busConfig = path.join(dir, "bus.conf");
    const avahiConfig = path.join(dir, "avahi-daemon.conf");
    await writeFile(busConfig, busConfiguration(socket));
    await writeFile(avahiConfig, avahiConfiguration(interfaceName, options.hostName ?? "rtr7-avahi-browser"));
    const timeoutMs = options.startTimeoutMs ?? 15_000;

    const dbus = start("dbus-daemon", [
      `--config-file=${busConfig}`,
      "--nofork",
      "--nopidfile",
      "--print-address",
    ]);
    started.push(dbus);
    await dbus.waitForLine(/^unix:path=/, timeoutMs);
    const env = { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${socket}` };

    const avahi = start(
      "ip",
      [
        "netns",
        "exec",
        ns.name,
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount -t tmpfs rtr7-avahi-run /run && exec "$@"',
        "sh",
        "avahi-daemon",
        "--no-drop-root",
        "--no-chroot",
        "--no-rlimits",
        "--no-proc-title",
        "-f",
        avahiConfig,
      ],
      { env },
    );
    started.push(avahi);
    await avahi.waitForLine(/Server startup complete/, timeoutMs);

    const browseCommand = (args: string[]): Started => {
      const browser = start("ip", ["netns", "exec", ns.name, "avahi-browse", ...args], { env });
      started.push(browser);
      return browser;
    };

    return {
      async browse(type, browseTimeoutMs) {
        const browser = browseCommand(["-r", "-p", "-t", type]);
        try {
          await browser.exited(browseTimeoutMs);
        } finally {
          await browser.stop();
        }
        return parseAvahiBrowse(browser.output());
      },
      watch(type) {
        const browser = browseCommand(["-r", "-p", type]);
        return {
          records: () => parseAvahiBrowse(browser.output()),
          async waitFor(match, waitTimeoutMs) {
            // Started.waitForLine also returns lines seen before, so the output is polled instead.
            const deadline = Date.now() + waitTimeoutMs;
            for (;;) {
              const found = parseAvahiBrowse(browser.output()).find(match);
              if (found) return found;
              if (Date.now() >= deadline)
                throw new Error(
                  `avahi-browse ${type}: no matching record within ${waitTimeoutMs} ms; it printed:\n${browser.output()}`,
                );
              await delay(100);
            }
          },
          stop: () => browser.stop(),
        };
      },
      stop: stopAll,
      daemonOutput: () => avahi.output(),
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

function busConfiguration(socket: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`;
}

function avahiConfiguration(interfaceName: string, hostName: string): string {
  return `[server]
host-name=${hostName}
use-ipv4=yes
use-ipv6=no
allow-interfaces=${interfaceName}
enable-dbus=yes

[wide-area]
enable-wide-area=no

[publish]
disable-publishing=yes
`;
}

/** Parses `avahi-browse -p` output; lines of other kinds (messages, errors) are ignored. */
export function parseAvahiBrowse(output: string): AvahiRecord[] {
  const records: AvahiRecord[] = [];
  for (const line of output.split("\n")) {
    const fields = line.split(";");
    const [event, interfaceName, protocol, name, type, domain, hostname, address, port] = fields;
    if ((event !== "+" && event !== "=" && event !== "-") || domain === undefined) continue;
    const record: AvahiRecord = {
      event,
      interfaceName: interfaceName ?? "",
      protocol: protocol ?? "",
      name: unescapeAvahi(name ?? ""),
      type: type ?? "",
      domain,
    };
    if (event === "=" && port !== undefined) {
      record.hostname = hostname ?? "";
      record.address = address ?? "";
      record.port = Number(port);
      record.txt = parseTxt(fields.slice(9).join(";"));
    }
    records.push(record);
  }
  return records;
}

/** avahi's escaping of labels: `\DDD` (decimal byte) and `\X` for X. */
function unescapeAvahi(text: string): string {
  const bytes: number[] = [];
  for (let index = 0; index < text.length; index++) {
    const character = text[index] ?? "";
    if (character === "\\" && /^\d{3}$/.test(text.slice(index + 1, index + 4))) {
      bytes.push(Number(text.slice(index + 1, index + 4)));
      index += 3;
    } else if (character === "\\" && index + 1 < text.length) {
      bytes.push(...Buffer.from(text[index + 1] ?? ""));
      index += 1;
    } else {
      bytes.push(...Buffer.from(character));
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

/** `"key=value" "other=1"` → {key: "value", other: "1"}. */
function parseTxt(text: string): Record<string, string> {
  const txt: Record<string, string> = {};
  for (const match of text.matchAll(/"((?:[^"\\]|\\.)*)"/g)) {
    const item = unescapeAvahi(match[1] ?? "");
    const equals = item.indexOf("=");
    if (equals === -1) txt[item] = "";
    else txt[item.slice(0, equals)] = item.slice(equals + 1);
  }
  return txt;
}
