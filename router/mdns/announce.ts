// The unit's mDNS announcement, so that `rtr7 fleet` (and avahi-browse, or
// any DNS-SD browser) finds units on the LAN without a list of addresses:
// one `_rtr7._tcp` service named after the hostname, on the update API's
// port, with TXT hostname, version, slot and model. Published with
// bonjour-service on the interface that holds config.address; withdrawn on
// close() with a goodbye (TTL 0), so browsers drop the unit at once instead
// of when their cache expires. Runs as its own process (`service mdns`);
// errors of the announcement are logged, never fatal: a unit that cannot be
// found by mDNS still routes, updates and answers /health.json.
import type { EventEmitter } from "node:events";
import os from "node:os";
import { Bonjour, type Service } from "bonjour-service";
import { describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import type { RunningService, ServiceMain } from "../services.js";
import type { ServiceConfig } from "../unit.js";

/** The DNS-SD service type, without underscores: bonjour-service makes it `_rtr7._tcp`. */
export const rtr7ServiceType = "rtr7";

/** How long close() waits for the goodbye to be sent. */
const withdrawTimeoutMs = 2000;
/** Probing takes under a second; longer means the name is taken (bonjour-service only prints that). */
const announceWarningMs = 5000;

export function announcementTxt(config: ServiceConfig): Record<string, string> {
  return { hostname: config.hostname, version: config.version, slot: config.slot, model: config.model };
}

/**
 * The IPv4 address of the interface to announce on: config.address, or the
 * address of config.interfaceName when the services listen on 0.0.0.0, or
 * undefined (every interface) when neither says.
 */
export function announceAddress(
  config: ServiceConfig,
  interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces(),
): string | undefined {
  if (config.address !== "0.0.0.0" && config.address !== "") return config.address;
  if (!config.interfaceName) return undefined;
  return interfaces[config.interfaceName]?.find((entry) => entry.family === "IPv4")?.address;
}

export function startAnnouncement(config: ServiceConfig, log: Logger): Promise<RunningService> {
  const address = announceAddress(config);
  // multicast-dns binds to `interface` unless told otherwise, and a socket
  // bound to a unicast address never sees the multicast queries it must
  // answer: bind to any address and join the group on that interface only.
  const mdnsOptions = address === undefined ? {} : { interface: address, bind: "0.0.0.0" };
  let bonjour: Bonjour | undefined;
  let service: Service | undefined;
  try {
    bonjour = new Bonjour(mdnsOptions as object, (error: unknown) =>
      log.warn({ err: error }, `mDNS: sending failed: ${describeError(error)}`),
    );
    // bonjour-service does not listen for its socket's errors (EADDRINUSE,
    // EACCES), which would otherwise end the process as unhandled events.
    const mdns = (bonjour as unknown as { server?: { mdns?: EventEmitter } }).server?.mdns;
    mdns?.on("error", (error: Error) =>
      log.error({ err: error }, `mDNS: socket failed, not announcing: ${error.message}`),
    );
    mdns?.on("warning", (error: Error) => log.debug({ err: error }, `mDNS: ${error.message}`));
    const published = bonjour.publish({
      name: config.hostname,
      type: rtr7ServiceType,
      port: config.ports.update,
      host: `${config.hostname}.local`,
      txt: announcementTxt(config),
      disableIPv6: true,
    });
    service = published;
    const warning = setTimeout(() => {
      if (!published.published)
        log.warn(
          { event: "mdns-not-announced" },
          `mDNS: ${config.hostname}._rtr7._tcp is not announced yet; is the name taken by another unit on the LAN?`,
        );
    }, announceWarningMs);
    warning.unref();
    published.on("up", () => {
      clearTimeout(warning);
      log.info(
        { event: "mdns-announced", address: address ?? "all interfaces" },
        `mDNS: announced ${config.hostname}._rtr7._tcp.local on ${address ?? "all interfaces"}, port ${config.ports.update}`,
      );
    });
  } catch (error) {
    log.error({ err: error }, `mDNS: cannot announce: ${describeError(error)}`);
  }
  return Promise.resolve({ close: () => withdraw(bonjour, service, log) });
}

async function withdraw(
  bonjour: Bonjour | undefined,
  service: Service | undefined,
  log: Logger,
): Promise<void> {
  if (service) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, withdrawTimeoutMs);
      try {
        (service.stop as (callback: () => void) => void)(() => {
          clearTimeout(timer);
          resolve();
        });
      } catch (error) {
        log.warn({ err: error }, `mDNS: withdrawing failed: ${describeError(error)}`);
        clearTimeout(timer);
        resolve();
      }
    });
    log.info({ event: "mdns-withdrawn" }, "mDNS: announcement withdrawn");
  }
  if (bonjour) {
    const instance = bonjour;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, withdrawTimeoutMs);
      instance.destroy(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

export const announceMain: ServiceMain = (config, log) => startAnnouncement(config, log);
