// How the workstation talks to a unit: over HTTPS with the unit's pinned
// certificate, or over plain HTTP. One policy, used by safe-update, the
// fleet's push driver and survey (and so by rollbacks, which go through
// the same unit target), and `rtr7 fleet trust`:
//
// - a unit with a pin (`tlsFingerprint` in fleet.json, from `rtr7 recover`,
//   a first contact or `rtr7 fleet trust`) is only ever reached over HTTPS,
//   each connection checked against the pin before a byte is sent
//   (tls-peer.ts). Its HTTPS port not answering is an error, never a reason
//   to fall back to plain HTTP: no password goes in clear to a pinned unit;
// - a unit without a pin is asked for its certificate on its HTTPS port
//   (first contact, trust on first use): one that presents one gets it
//   recorded as its pin (its inventory entry added when it had none), and
//   is reached over HTTPS from then on;
// - a unit without a pin and without HTTPS (an older rtr7, a gokrazy unit,
//   the simulated fleet) is reached over plain HTTP, with one warning per
//   command run, which --insecure-http silences.
import { silentLogger, type Logger } from "../../lib/log.js";
import { unitPorts } from "../../lib/wire/update-protocol.js";
import { inventoryUnit, recordUnitPin, type InventoryUnit } from "../fleet/inventory.js";
import type { UnitEndpoint } from "./endpoint.js";
import { peerFingerprint } from "./tls-peer.js";

/** Reads the certificate a unit presents at host:port (its SHA-256 fingerprint). */
export type FingerprintReader = (host: string, port: number, timeoutMs: number) => Promise<string>;

const readFingerprint: FingerprintReader = (host, port, timeoutMs) =>
  peerFingerprint({ host, port, timeoutMs, step: "TLS handshake" });

/** The plain-HTTP warning, said once per command run (one per process by default). */
export class PlainHttpNotice {
  private said = false;

  warn(log: Logger, hostname: string, address: string): void {
    if (this.said) return;
    this.said = true;
    log.warn(
      { event: "plain-http", unit: hostname, address },
      `${hostname} (${address}) has no pinned TLS certificate and serves no HTTPS: going on over plain HTTP, so its password crosses the network in clear (so does any other such unit in this run). An older rtr7 or a gokrazy unit does this; --insecure-http silences this warning.`,
    );
  }
}

const commandRunNotice = new PlainHttpNotice();

export interface UnitConnectionOptions {
  hostname: string;
  /** How to reach it (--address, mDNS's address); default its inventory address, else its hostname. */
  address?: string;
  /** The update API's plain HTTP port (--port, mDNS's SRV record); default 80. */
  port?: number;
  /** $XDG_CONFIG_HOME/rtr7/fleet.json: where the pin is read and recorded. */
  inventoryFile: string;
  /** --insecure-http: no warning for a unit reached over plain HTTP. */
  insecureHttp?: boolean;
  log?: Logger;
  /** Default: one warning per process. */
  notice?: PlainHttpNotice;
  /** How long the first contact waits for the unit's HTTPS port; default 3 s. */
  probeTimeoutMs?: number;
  /** Default: a TLS handshake with node:tls. */
  fingerprint?: FingerprintReader;
}

/** The endpoint the unit target and the health probe take for this unit, pin and all. */
export async function unitConnection(options: UnitConnectionOptions): Promise<UnitEndpoint> {
  const log = (options.log ?? silentLogger()).child({ subsystem: "tls" });
  const entry: InventoryUnit | undefined = await inventoryUnit(options.inventoryFile, options.hostname);
  const host = options.address ?? entry?.address ?? options.hostname;
  const plain: UnitEndpoint = { host, ...(options.port !== undefined ? { port: options.port } : {}) };
  const pinned = (fingerprint256: string): UnitEndpoint => ({
    ...plain,
    tls: { fingerprint256, hostname: options.hostname },
  });
  if (entry?.tlsFingerprint !== undefined) return pinned(entry.tlsFingerprint);

  const reader = options.fingerprint ?? readFingerprint;
  let seen: string;
  try {
    seen = await reader(host, unitPorts.updateTls, options.probeTimeoutMs ?? 3000);
  } catch (error) {
    log.debug({ err: error, unit: options.hostname }, `${options.hostname}: no HTTPS at ${host}`);
    if (!options.insecureHttp) (options.notice ?? commandRunNotice).warn(log, options.hostname, host);
    return plain;
  }
  await recordUnitPin(options.inventoryFile, { hostname: options.hostname, address: host }, seen);
  log.info(
    {
      event: "tls-pinned",
      unit: options.hostname,
      address: host,
      fingerprint: seen,
      file: options.inventoryFile,
    },
    `${options.hostname} (${host}): first contact, pinned its TLS certificate SHA-256 ${seen} in ${options.inventoryFile}`,
  );
  return pinned(seen);
}

export interface TrustResult {
  hostname: string;
  address: string;
  /** The pin before (undefined: none). */
  previous: string | undefined;
  /** The certificate the unit presents now, now pinned. */
  current: string;
}

/** `rtr7 fleet trust H`: pins the certificate the unit presents now, whatever was pinned before. */
export async function trustUnit(options: {
  hostname: string;
  address?: string;
  inventoryFile: string;
  timeoutMs?: number;
  fingerprint?: FingerprintReader;
}): Promise<TrustResult> {
  const entry = await inventoryUnit(options.inventoryFile, options.hostname);
  const address = options.address ?? entry?.address ?? options.hostname;
  const reader = options.fingerprint ?? readFingerprint;
  const current = await reader(address, unitPorts.updateTls, options.timeoutMs ?? 5000);
  const previous = await recordUnitPin(
    options.inventoryFile,
    { hostname: options.hostname, address },
    current,
  );
  return { hostname: options.hostname, address, previous, current };
}
