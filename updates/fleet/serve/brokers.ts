// The two brokers `rtr7 fleet serve --broker` names: `embedded` starts
// broker.ts's aedes on node:tls with the server's TLS pair (units are told
// mqtts://PUBLIC-HOST:PORT, the server's own client goes over loopback),
// and mqtts://HOST:PORT is an external broker (mosquitto, EMQX, ...) set up
// with mosquitto-config.ts's files, which present the same certificate.
// Either way the server's client trusts exactly that certificate (it is its
// own CA; no name check, since units and server reach it by address), so
// the server's password never goes to another broker. `--print-broker-config
// DIR` writes an external mosquitto's files for the units DATA has enrolled.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error } from "../../../lib/errors.js";
import { startEmbeddedBroker } from "./broker.js";
import { writeMosquittoConfig, type MosquittoFiles } from "./mosquitto-config.js";
import { ensureServerCertificate } from "./server-certificate.js";
import { UnitCredentials } from "./unit-credentials.js";
import type { Broker, BrokerContext } from "./serve.js";

const pinnedTo = (cert: string): Record<string, unknown> => ({
  ca: cert,
  rejectUnauthorized: true,
  checkServerIdentity: () => undefined,
});

/** The embedded broker on host:port, announced to units as publicHost. */
export function embeddedBroker(options: { host: string; port: number; publicHost: string }) {
  return async (context: BrokerContext): Promise<Broker> => {
    const broker = await startEmbeddedBroker({
      host: options.host,
      port: options.port,
      tls: { key: context.tls.key, cert: context.tls.cert },
      credentials: context.credentials,
      log: context.log,
    });
    const loopback = options.host.includes(":") ? "[::1]" : "127.0.0.1";
    const local = options.host === "0.0.0.0" || options.host === "::" ? loopback : options.host;
    return {
      url: `mqtts://${options.publicHost}:${broker.port}`,
      connectUrl: `mqtts://${local.includes(":") && !local.startsWith("[") ? `[${local}]` : local}:${broker.port}`,
      mqttOptions: pinnedTo(context.tls.cert),
      close: () => broker.close(),
    };
  };
}

/** An external broker at mqtts://HOST:PORT. */
export function externalBroker(url: string) {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `--broker ${JSON.stringify(url)}: want embedded or mqtts://HOST:PORT`,
    );
  }
  if (parsed.protocol !== "mqtts:" || parsed.port === "")
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `--broker ${url}: want mqtts://HOST:PORT (units log in with a password: TLS only)`,
    );
  return (context: BrokerContext): Promise<Broker> =>
    Promise.resolve({
      url: `mqtts://${parsed.host}`,
      connectUrl: `mqtts://${parsed.host}`,
      mqttOptions: pinnedTo(context.tls.cert),
      close: () => Promise.resolve(),
    });
}

/** Writes mosquitto's passwd, acl and mosquitto.conf for DATA's units into `dir` (mosquitto-config.ts). */
export async function printBrokerConfig(options: {
  dataDir: string;
  dir: string;
  port: number;
  publicHost: string;
}): Promise<MosquittoFiles> {
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const tls = await ensureServerCertificate(options.dataDir, options.publicHost);
  const credentials = new UnitCredentials(path.join(options.dataDir, "units.sqlite"));
  await credentials.serverCredential();
  return writeMosquittoConfig(options.dir, credentials, {
    port: options.port,
    certFile: tls.certFile,
    keyFile: tls.keyFile,
  });
}
