// Where a unit is, as the unit target and the health probe take it: its
// address, the plain HTTP ports of the update API, diagd and backupd, and,
// for a unit whose certificate is pinned, the pin and the HTTPS ports used
// instead. Which of the two a unit gets is unit-connection.ts's decision.
import { unitPorts } from "../../lib/wire/update-protocol.js";
import type { UnitPin } from "./tls-peer.js";

export interface UnitEndpoint {
  host: string;
  /** The update API's port; default 80. */
  port?: number;
  /** diagd's port; default 7733. */
  diagdPort?: number;
  /** backupd's port; default 8077. */
  backupdPort?: number;
  /**
   * The unit's pinned certificate: then every exchange goes over HTTPS to
   * the TLS ports (default 443, 7734, 8078) instead of the ports above, and
   * a peer with another certificate is sent nothing. unit-connection.ts
   * decides whether a unit has one.
   */
  tls?: UnitTlsEndpoint;
}

export interface UnitTlsEndpoint extends UnitPin {
  port?: number;
  diagdPort?: number;
  backupdPort?: number;
}

/** The ports and pin an endpoint names: its TLS ones when it has a pin. */
export function endpointPorts(endpoint: UnitEndpoint): {
  ports: { update: number; diagd: number; backupd: number };
  tls: UnitPin | undefined;
} {
  const { tls } = endpoint;
  if (tls === undefined)
    return {
      ports: {
        update: endpoint.port ?? unitPorts.update,
        diagd: endpoint.diagdPort ?? unitPorts.diagd,
        backupd: endpoint.backupdPort ?? unitPorts.backupd,
      },
      tls: undefined,
    };
  return {
    ports: {
      update: tls.port ?? unitPorts.updateTls,
      diagd: tls.diagdPort ?? unitPorts.diagdTls,
      backupd: tls.backupdPort ?? unitPorts.backupdTls,
    },
    tls: { fingerprint256: tls.fingerprint256, hostname: tls.hostname },
  };
}
