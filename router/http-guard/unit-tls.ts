// Which HTTPS port a service serves and with what: the service's TLS port
// from its config (absent: no HTTPS, as in tests that build a config by
// hand) and the unit's certificate from /perm (lib/tls/unit-certificate.ts).
// The suite makes the certificate before it starts the services, so they
// find it; a service started on its own makes it the same way. A
// certificate that cannot be made or read leaves the service on plain HTTP
// only, logged: the unit stays reachable, and a workstation that pinned
// it refuses to send it a password in clear.
import type { Logger } from "../../lib/log.js";
import { ensureUnitCertificate } from "../../lib/tls/unit-certificate.js";
import type { ServiceConfig } from "../unit.js";
import type { TlsListen } from "./serve.js";

export type TlsService = "update" | "diagd" | "backupd";

const tlsPortKey = { update: "updateTls", diagd: "diagdTls", backupd: "backupdTls" } as const;

/** The service's TLS port and the unit's certificate, or undefined (logged) when it has none. */
export async function unitTlsListen(
  config: Pick<ServiceConfig, "hostname" | "ports" | "paths">,
  service: TlsService,
  log: Logger,
): Promise<TlsListen | undefined> {
  const port = config.ports[tlsPortKey[service]];
  if (port === undefined) return undefined;
  try {
    const pair = await ensureUnitCertificate(config.paths.perm, config.hostname);
    if (pair.created)
      log.info(
        { event: "tls-certificate", fingerprint: pair.fingerprint256, replaced: pair.replaced },
        `made the unit's TLS certificate${pair.replaced ? ` (${pair.replaced})` : ""}: SHA-256 ${pair.fingerprint256}`,
      );
    return { port, key: pair.key, cert: pair.cert };
  } catch (error) {
    log.error({ err: error }, `no TLS certificate: ${service} serves plain HTTP only`);
    return undefined;
  }
}
