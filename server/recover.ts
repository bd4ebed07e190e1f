// One recovery run, start to finish: choose the network, hash the images
// into a manifest (refusing a release built for another unit), start HTTP,
// TFTP and DHCP on the unit's interface, watch the serial console (driving
// the boot menu if asked), reset the unit, then wait for its verdict. The
// unit fetches its update API password over the token-checked HTTP: the
// workstation's for the hostname, or a new one kept there first
// (updates/credentials.ts). TFTP and HTTP serve only the address the DHCP
// lock's ACK gave the unit (server/pxe/unit-access.ts). Resolves with a
// summary when the unit reports success; rejects with an Rtr7Error when it reports failure, its kernel
// panics, the timeout passes or the run is aborted. Whatever happens, every
// server and device opened here is closed before this returns.
import { randomBytes } from "node:crypto";
import { Rtr7Error } from "../lib/errors.js";
import { formatBytes, type Logger } from "../lib/log.js";
import { recoveryCmdlineKeys } from "../lib/wire/kernel-cmdline.js";
import { checkedDiskName, checkedHostname, normaliseMac } from "../lib/wire/names.js";
import type { FailureReport, ProgressReport } from "../lib/wire/report.js";
import { startDhcpServer } from "./dhcp/server.js";
import { buildRecoveryHttp } from "./http/recovery-http.js";
import { chooseRecoveryNetwork, type InterfaceWorld } from "./net/interfaces.js";
import { bootFileFor, httpBootFiles, pxeBootFiles, type BootOver } from "./pxe/boot-files.js";
import { afterAck, initialAccessState, mayFetch, type UnitAccessState } from "./pxe/unit-access.js";
import { startTftpServer } from "./tftp/server.js";
import { prepareImages } from "./recovery-images.js";
import type { BootMenuKind } from "./serial/boot-menu.js";

export interface RecoveryImages {
  mbr: string;
  boot: string;
  root: string;
  backup?: string;
  /** The build's manifest.json, when the images come from `rtr7 image build`'s directory. */
  manifest?: string;
}

export interface RecoverOptions {
  images: RecoveryImages;
  hostname: string;
  kernel: string;
  /** The initramfs pxelinux boots; default: rtr7's recovery initramfs for the kernel, built once and cached. */
  initrd?: string;
  /** How pxelinux fetches the kernel and the initramfs; default "tftp". */
  bootOver?: BootOver;
  interfaceName?: string;
  recoverOctet: number;
  /** Serve only this MAC (locked from the start). */
  mac?: string;
  /** The disk recovery-init erases (sda, nvme0n1): put on the unit's kernel command line as rtr7.disk=. */
  disk?: string;
  /** Reset the unit through the Teensy rebootor before waiting. */
  reset: boolean;
  rebootor?: string;
  serial?: { path: string; baudRate: number; bootMenu: BootMenuKind; logFile?: string };
  ports: { http: number; tftp: number; dhcp: number };
  /** Give up after this long; undefined waits for ever. */
  timeoutMs?: number;
  log: Logger;
  signal?: AbortSignal;
  /** The world, for tests: interface list, session token, reset action. */
  interfaces?: InterfaceWorld;
  token?: string;
  resetUnit?: (options: { rebootor?: string; log: Logger }) => Promise<unknown>;
  onProgress?: (report: ProgressReport) => void;
  /**
   * The unit's update API password, asked for when the unit fetches it;
   * default: the workstation's for the hostname, else a new one written
   * there (updates/credentials.ts provisionUnitPassword).
   */
  password?: () => Promise<string>;
  /**
   * The workstation's public signing keys, for GET /trusted-keys; default:
   * $XDG_CONFIG_HOME/rtr7/keys/signing.pub (server/workstation-keys.ts).
   */
  trustedKeys?: () => Promise<string[]>;
  /**
   * `rtr7 recover --new-key`: the unit's trusted keys are replaced by the
   * workstation's, and the release is not checked against the old ones.
   */
  newKey?: boolean;
}

export interface RecoverySummary {
  hostname: string;
  unitMac: string | undefined;
  unitAddress: string;
  serverAddress: string;
  interfaceName: string;
  durationMs: number;
  bytesServed: { http: number; tftp: number };
  message?: string;
  /** The unit's TLS certificate (SHA-256), as its success report gave it, for the workstation to pin. */
  tlsFingerprint?: string;
}

export async function recover(options: RecoverOptions): Promise<RecoverySummary> {
  const started = Date.now();
  const log = options.log;
  checkedHostname(options.hostname);
  const lockedMac = options.mac === undefined ? undefined : normaliseMac(options.mac);
  if (options.disk !== undefined) checkedDiskName(options.disk);
  const network = chooseRecoveryNetwork(
    { interfaceName: options.interfaceName, recoverOctet: options.recoverOctet },
    options.interfaces,
  );
  const token = options.token ?? randomBytes(16).toString("hex");
  const { imageFiles, manifest, signed } = await prepareImages(options.images, options.hostname, log);
  const password = once(options.password ?? (() => workstationPassword(options.hostname, log)));
  const trustedKeys = once(options.trustedKeys ?? defaultTrustedKeys);
  if (options.newKey === true && (await trustedKeys()).length === 0)
    throw new Rtr7Error(
      "RTR7_ERR_KEY",
      "recover --new-key: this workstation has no signing key to give the unit in place of its own",
    );
  const initrd = options.initrd ?? (await defaultInitrd(options.kernel, log));
  const bootInputs = {
    kernel: options.kernel,
    initrd,
    serverAddress: network.serverAddress,
    httpPort: options.ports.http,
    hostname: options.hostname,
    token,
    bootOver: options.bootOver ?? "tftp",
    ...(options.disk === undefined
      ? {}
      : { extraCmdline: [`${recoveryCmdlineKeys.disk}=${checkedDiskName(options.disk)}`] }),
  };
  const bootFiles = await pxeBootFiles(bootInputs);
  for (const file of await httpBootFiles(bootInputs)) imageFiles.add(file);

  const closers: (() => Promise<unknown>)[] = [];
  const closeAll = async (): Promise<void> => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
  };
  try {
    const verdict = new Verdict();
    let tlsFingerprint: string | undefined;
    let unitMac = lockedMac;
    // Whom TFTP and HTTP serve: the locked unit's address once its ACK is
    // decided (server/pxe/unit-access.ts), nobody before.
    let access: UnitAccessState = initialAccessState(lockedMac);
    const refuse = (peerAddress: string, resource: string): string | undefined => {
      const decision = mayFetch(access, { peerAddress, resource });
      return decision.allowed ? undefined : decision.reason;
    };

    const http = buildRecoveryHttp({
      files: imageFiles,
      manifest,
      token,
      log,
      priorityPeers: [network.unitAddress],
      refuse,
      password,
      trustedKeys,
      ...(options.newKey === true ? { replaceTrustedKeys: true } : {}),
      ...(signed ? { manifestBytes: signed.bytes } : {}),
      onProgress: (report, peer) => {
        // Step changes are events worth a line; byte counts while an image
        // is written go to onProgress (a progress bar, or JSON lines).
        const level = report.message === undefined && report.bytesDone !== undefined ? "debug" : "info";
        log[level](
          { subsystem: "unit", peer, event: "progress", ...report },
          report.message ?? `${report.step}${report.image ? ` ${report.image}` : ""}`,
        );
        options.onProgress?.(report);
      },
      onSuccess: (report) => {
        tlsFingerprint ??= report.tlsFingerprint;
        verdict.succeed(report.message);
      },
      onFailure: (report, peer) => verdict.fail(unitFailure(report, peer)),
    });
    closers.push(() => http.app.close());
    await listenHttp(http.app, network.serverAddress, options.ports.http);

    const tftp = await startTftpServer({
      address: network.serverAddress,
      port: options.ports.tftp,
      files: bootFiles,
      log,
      refuse,
    });
    closers.push(() => tftp.close());

    const dhcp = await startDhcpServer({
      serverAddress: network.serverAddress,
      netmask: network.netmask,
      offerAddress: network.unitAddress,
      lockedMac: unitMac,
      bootFileFor,
      port: options.ports.dhcp,
      log,
    });
    closers.push(() => dhcp.close());
    dhcp.on("bind", (lease: { mac: string; address: string }) => {
      access = afterAck(access, lease);
    });
    dhcp.on("ack", (event: { mac: string }) => {
      unitMac = event.mac;
    });

    log.info(
      {
        event: "start",
        interface: network.interfaceName,
        server: network.serverAddress,
        unit: network.unitAddress,
        hostname: options.hostname,
      },
      `serving recovery for ${options.hostname} on ${network.interfaceName} (${network.serverAddress}/${network.prefixLength}); the unit gets ${network.unitAddress}`,
    );

    if (options.serial) {
      const { watchConsole } = await import("./serial/watch.js");
      const console = await watchConsole({ ...options.serial, log, onFatal: (error) => verdict.fail(error) });
      closers.push(() => console.close());
    }

    if (options.reset) {
      const resetUnit = options.resetUnit ?? (await import("./rebootor.js")).resetUnit;
      await resetUnit({ rebootor: options.rebootor, log });
    } else {
      log.info({ event: "waiting" }, "not resetting the unit (--no-reset): power it on or reset it now");
    }

    const message = await verdict.wait(options.timeoutMs, options.signal);
    const summary: RecoverySummary = {
      hostname: options.hostname,
      unitMac,
      unitAddress: network.unitAddress,
      serverAddress: network.serverAddress,
      interfaceName: network.interfaceName,
      durationMs: Date.now() - started,
      bytesServed: { http: http.bytesServed(), tftp: tftp.bytesServed() },
      ...(message ? { message } : {}),
      ...(tlsFingerprint ? { tlsFingerprint } : {}),
    };
    return summary;
  } finally {
    await closeAll();
  }
}

/** rtr7's own recovery initramfs for this kernel, from the cache when its inputs are unchanged. */
async function defaultInitrd(kernel: string, log: Logger): Promise<string> {
  const { buildRecoveryInitramfs } = await import("../updates/image/initramfs/builder.js");
  const started = Date.now();
  const built = await buildRecoveryInitramfs({ kernel, log });
  log.info(
    { event: "initramfs", path: built.path, cached: built.cached, bytes: built.bytes },
    built.cached
      ? `recovery initramfs from the cache (${formatBytes(built.bytes)})`
      : `built the recovery initramfs in ${((Date.now() - started) / 1000).toFixed(1)} s (${formatBytes(built.bytes)})`,
  );
  return built.path;
}

/** `make` run at most once; later calls share its promise (a failure too). */
function once<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => (made ??= make());
}

async function defaultTrustedKeys(): Promise<string[]> {
  const [{ keysDir }, { workstationPublicKeys }] = await Promise.all([
    import("../updates/keys.js"),
    import("./workstation-keys.js"),
  ]);
  return workstationPublicKeys(keysDir());
}

async function workstationPassword(hostname: string, log: Logger): Promise<string> {
  const { provisionUnitPassword } = await import("../updates/credentials.js");
  const found = await provisionUnitPassword(hostname);
  log.info(
    { event: "password", source: found.source, created: found.created },
    found.created
      ? `no update API password for ${hostname} on this workstation: made one, kept in ${found.source} (0600)`
      : `the unit gets the update API password from ${found.source}`,
  );
  return found.password;
}

async function listenHttp(
  app: ReturnType<typeof buildRecoveryHttp>["app"],
  address: string,
  port: number,
): Promise<void> {
  try {
    await app.listen({ host: address, port });
  } catch (error) {
    throw listenError(error, `tcp ${address}:${port} (HTTP)`);
  }
}

/** A failed bind: not root for a privileged port, or the port is taken. */
export function listenError(error: unknown, what: string): Rtr7Error {
  const code = (error as NodeJS.ErrnoException).code;
  const message = `listen on ${what}: ${(error as Error).message}`;
  return code === "EACCES"
    ? new Rtr7Error("RTR7_ERR_NOT_ROOT", message, { cause: error })
    : new Rtr7Error("RTR7_ERR_LISTEN", message, { cause: error });
}

function unitFailure(report: FailureReport, peer: string): Rtr7Error {
  return new Rtr7Error(
    "RTR7_ERR_RECOVERY_FAILED",
    `the unit (${peer}) failed at ${report.step}: ${report.message}`,
  );
}

/** The unit's verdict: the first of success, failure, timeout or abort wins. */
class Verdict {
  private settle?: { resolve: (message?: string) => void; reject: (error: Error) => void };
  private early?: { ok: true; message?: string } | { ok: false; error: Error };

  succeed(message: string | undefined): void {
    if (this.settle) this.settle.resolve(message);
    else this.early ??= { ok: true, message };
  }

  fail(error: Error): void {
    if (this.settle) this.settle.reject(error);
    else this.early ??= { ok: false, error };
  }

  wait(timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => finish(() => reject(abortError(signal)));
      const finish = (action: () => void): void => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this.settle = { resolve: () => undefined, reject: () => undefined };
        action();
      };
      this.settle = {
        resolve: (message) => finish(() => resolve(message)),
        reject: (error) => finish(() => reject(error)),
      };
      if (this.early) {
        const early = this.early;
        finish(() => (early.ok ? resolve(early.message) : reject(early.error)));
        return;
      }
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      if (timeoutMs !== undefined) {
        timer = setTimeout(
          () =>
            finish(() =>
              reject(
                new Rtr7Error(
                  "RTR7_ERR_RECOVERY_TIMEOUT",
                  `recovery: no success report from the unit within ${Math.round(timeoutMs / 1000)} s`,
                ),
              ),
            ),
          timeoutMs,
        );
      }
    });
  }
}

function abortError(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Rtr7Error
    ? reason
    : new Rtr7Error("RTR7_ERR_ABORTED", "recovery: stopped before the unit reported");
}
