// `rtr7 fleet serve`: the remote fleet's server (issue 15). The work is in
// updates/fleet/serve/serve.ts; this command turns flags into its options.
import { Flags } from "@oclif/core";
import path from "node:path";
import { parseDuration } from "../../../lib/duration.js";
import { Rtr7Error } from "../../../lib/errors.js";
import { Rtr7Command } from "../../base.js";

function hostAndPort(text: string, flag: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535)
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `${flag} ${JSON.stringify(text)}: want ADDRESS:PORT (e.g. 0.0.0.0:8443)`,
    );
  return { host: match[1] ?? match[2] ?? "", port };
}

export default class FleetServe extends Rtr7Command {
  static override summary =
    "Serve a remote fleet: signed releases over HTTPS, update jobs through an MQTT broker.";

  static override description = `Units behind NAT connect out to the broker (--broker embedded: aedes in this process,
on --broker-listen; or an external mosquitto at mqtts://HOST:PORT) and take update jobs; they download
the release's images from this server over HTTPS (Range, resumable) and install them only if the
release is signed by a key they trust. State lives in --data: TLS pair, admin credential
(admin-credential.json: copy it to the workstation as $XDG_CONFIG_HOME/rtr7/fleet-server.json),
releases, backups, rollouts and jobs (SQLite). Rollouts interrupted by a kill resume at the next
start, and no unit is updated twice.`;

  static override examples = [
    {
      description: "Serve a small fleet with the embedded broker, trusting the fleet's key:",
      command:
        "<%= config.bin %> fleet serve --data /var/lib/rtr7 --listen 0.0.0.0:8443 --public-url https://fleet.example:8443 --trust-key ~/.config/rtr7/keys/signing.pub",
    },
    {
      description: "Write mosquitto's files for the enrolled units (then send mosquitto SIGHUP):",
      command: "<%= config.bin %> fleet serve --data /var/lib/rtr7 --print-broker-config /etc/mosquitto/rtr7",
    },
    {
      description: "With an external mosquitto:",
      command: "<%= config.bin %> fleet serve --data /var/lib/rtr7 --broker mqtts://127.0.0.1:8883",
    },
  ];

  static override flags = {
    data: Flags.string({
      description: "The server's data directory.",
      default: "/var/lib/rtr7-fleet",
      helpValue: "DIR",
    }),
    listen: Flags.string({
      description: "HTTPS address and port.",
      default: "0.0.0.0:8443",
      helpValue: "ADDR:PORT",
    }),
    broker: Flags.string({
      description: "embedded, or an external broker's mqtts://HOST:PORT.",
      default: "embedded",
      helpValue: "embedded|URL",
    }),
    "broker-listen": Flags.string({
      description: "The embedded broker's address and port.",
      default: "0.0.0.0:8883",
      helpValue: "ADDR:PORT",
    }),
    "public-url": Flags.string({
      description: "https://HOST:PORT units reach this server at [default: from --listen].",
      helpValue: "URL",
    }),
    "trust-key": Flags.string({
      description: "A fleet public key (minisign .pub) a published release must be signed by; repeatable.",
      multiple: true,
      helpValue: "FILE",
    }),
    "job-timeout": Flags.string({
      description: "A job whose unit says nothing for this long ends TIMED_OUT (failed).",
      default: "10m",
      helpValue: "DURATION",
    }),
    "keep-backups": Flags.integer({ description: "Backups kept per unit.", default: 5, min: 1 }),
    "print-broker-config": Flags.string({
      description:
        "Write an external mosquitto's passwd, acl and mosquitto.conf (the enrolled units, --broker-listen's port) into DIR, then exit.",
      helpValue: "DIR",
    }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(FleetServe);
    const log = this.makeLogger(flags);
    const listen = hostAndPort(flags.listen, "--listen");
    const publicUrl = flags["public-url"];
    const publicHost = new URL(
      publicUrl ?? `https://${listen.host === "0.0.0.0" ? "localhost" : listen.host}`,
    ).hostname;
    const [{ serveUntilSignal }, { embeddedBroker, externalBroker, printBrokerConfig }] = await Promise.all([
      import("../../../updates/fleet/serve/serve.js"),
      import("../../../updates/fleet/serve/brokers.js"),
    ]);
    if (flags["print-broker-config"] !== undefined) {
      const files = await printBrokerConfig({
        dataDir: path.resolve(flags.data),
        dir: path.resolve(flags["print-broker-config"]),
        port: hostAndPort(flags["broker-listen"], "--broker-listen").port,
        publicHost,
      });
      log.info(
        { event: "broker-config", ...files },
        `Wrote ${files.passwordFile}, ${files.aclFile} and ${files.configFile}.`,
      );
      return;
    }
    await serveUntilSignal({
      dataDir: path.resolve(flags.data),
      ...listen,
      ...(publicUrl ? { publicUrl } : {}),
      broker:
        flags.broker === "embedded"
          ? embeddedBroker({ ...hostAndPort(flags["broker-listen"], "--broker-listen"), publicHost })
          : externalBroker(flags.broker),
      trustKeys: flags["trust-key"] ?? [],
      jobTimeoutMs: parseDuration(flags["job-timeout"], "--job-timeout"),
      keepBackups: flags["keep-backups"],
      log,
    });
  }
}
