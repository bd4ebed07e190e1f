// diagd's verdict: the checks behind /health.json, in a fixed order (link,
// address, gateway, then diagd.json's targets), run concurrently, each with
// its own time budget, so that the whole evaluation answers within the 2 s
// that safe-update allows a health probe. Requests that arrive while an
// evaluation runs share it (single-flight): a burst of probes costs one round
// of pings and connects, not one per request.
import type { HealthCheck, HealthReport } from "../../lib/wire/health.js";
import { readSupervisorState } from "../supervisor/state.js";
import type { ServiceConfig } from "../unit.js";
import type { InterfaceAddress, ProbeResult, SystemView } from "./system.js";
import { loadTargets } from "./targets.js";

/** One evaluation: the report, and the tree diagd's page draws from it. */
export interface Evaluation {
  report: HealthReport;
  /** The interface checked, or undefined when none could be chosen. */
  interfaceName: string | undefined;
  /** link, address and gateway: the checks of the interface itself. */
  interfaceChecks: HealthCheck[];
  /** diagd.json's targets (and its problem, if any), reached through the gateway. */
  targetChecks: HealthCheck[];
  finishedAtMs: number;
}

export interface HealthEvaluatorOptions {
  config: ServiceConfig;
  system: SystemView;
  /** Budget of each check; default 1500 ms. */
  checkTimeoutMs?: number;
  now?: () => number;
}

interface Outcome {
  status: HealthCheck["status"];
  detail: string;
}

type Probe = (signal: AbortSignal) => Promise<Outcome>;

/** Listing addresses is one quick command; it must leave the checks their budget. */
const gatherTimeoutMs = 400;

export class HealthEvaluator {
  private inFlight: Promise<Evaluation> | undefined;
  private latest: Evaluation | undefined;
  private readonly checkTimeoutMs: number;
  private readonly now: () => number;

  constructor(private readonly options: HealthEvaluatorOptions) {
    this.checkTimeoutMs = options.checkTimeoutMs ?? 1500;
    this.now = options.now ?? Date.now;
  }

  /** A fresh evaluation, or the one already running. Never rejects. */
  evaluate(): Promise<Evaluation> {
    this.inFlight ??= this.run()
      .catch((error: unknown) => this.internalFailure(error))
      .finally(() => {
        this.inFlight = undefined;
      });
    return this.inFlight;
  }

  /** The last finished evaluation, if any. */
  last(): Evaluation | undefined {
    return this.latest;
  }

  private async run(): Promise<Evaluation> {
    const { config, system } = this.options;
    // Addresses, routes and diagd.json are read first (quickly: they decide
    // which checks there are), then every check runs at once.
    const [addresses, routes, targets] = await Promise.all([
      system.addresses(AbortSignal.timeout(gatherTimeoutMs)).catch((error: unknown) => error as Error),
      system.defaultRoutes().catch(() => []),
      loadTargets(config.paths),
    ]);
    const interfaceName = await this.chooseInterface(addresses instanceof Error ? [] : addresses);
    const label = interfaceName ?? "(none)";
    const route = routes[0];
    const interfaceProbes: [string, Probe][] = [
      [`link ${label}`, () => this.link(interfaceName)],
      [`address ${label}`, () => Promise.resolve(this.address(interfaceName, addresses))],
      route
        ? [`gateway ${route.gateway}`, async (signal) => asOutcome(await system.ping(route.gateway, signal))]
        : ["gateway", () => Promise.resolve({ status: "skipped", detail: "no default route" })],
    ];
    const targetProbes: [string, Probe][] = [];
    if (targets.problem !== undefined && targets.source !== undefined) {
      const problem = targets.problem;
      targetProbes.push([
        `config ${targets.source}`,
        () => Promise.resolve({ status: "failed", detail: problem }),
      ]);
    }
    for (const target of targets.targets.tcp) {
      targetProbes.push([
        `tcp ${target.text}`,
        async (signal) => asOutcome(await system.tcpConnect(target.host, target.port, signal)),
      ]);
    }
    const [interfaceChecks, targetChecks] = await Promise.all([
      Promise.all(interfaceProbes.map(([name, probe]) => this.timed(name, probe))),
      Promise.all(targetProbes.map(([name, probe]) => this.timed(name, probe))),
    ]);
    // Whether the slot is still on trial changes at commit, after this
    // service started: the supervisor's status file has the live value.
    const boot = (await readSupervisorState(this.options.config.paths.run))?.boot;
    const report = this.reportOf([...interfaceChecks, ...targetChecks], boot?.trial);
    const evaluation = { report, interfaceName, interfaceChecks, targetChecks, finishedAtMs: this.now() };
    this.latest = evaluation;
    return evaluation;
  }

  private reportOf(checks: HealthCheck[], trial?: boolean): HealthReport {
    const { config } = this.options;
    const failed = checks.find((check) => check.status === "failed");
    return {
      first_error: failed ? `${failed.name}: ${failed.detail}` : "",
      hostname: config.hostname,
      version: config.version,
      slot: config.slot,
      trial: trial ?? config.trial,
      uptime_seconds: Math.max(0, Math.floor((this.now() - config.bootedAtMs) / 1000)),
      checks,
    };
  }

  private internalFailure(error: unknown): Evaluation {
    const check: HealthCheck = { name: "diagd", status: "failed", detail: String(error), ms: 0 };
    const report = this.reportOf([check]);
    return {
      report,
      interfaceName: undefined,
      interfaceChecks: [],
      targetChecks: [check],
      finishedAtMs: this.now(),
    };
  }

  /** Runs one probe within the budget; a probe that throws or overruns is a failed check. */
  private async timed(name: string, probe: Probe): Promise<HealthCheck> {
    const started = performance.now();
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const overrun = new Promise<Outcome>((resolve) => {
      timer = setTimeout(() => {
        resolve({ status: "failed", detail: `no result within ${this.checkTimeoutMs} ms` });
        abort.abort();
      }, this.checkTimeoutMs);
    });
    let outcome: Outcome;
    try {
      outcome = await Promise.race([probe(abort.signal), overrun]);
    } catch (error) {
      outcome = abort.signal.aborted
        ? { status: "failed", detail: `no result within ${this.checkTimeoutMs} ms` }
        : { status: "failed", detail: (error as Error).message };
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
    return { name, ...outcome, ms: Math.round(performance.now() - started) };
  }

  private async link(interfaceName: string | undefined): Promise<Outcome> {
    if (interfaceName === undefined) return this.noInterface();
    const state = await this.options.system.linkState(interfaceName);
    if (state.operstate === undefined) return { status: "failed", detail: "no such interface" };
    // lo and tun devices report "unknown"; their carrier says whether they pass traffic.
    const up = state.operstate === "up" || (state.operstate === "unknown" && state.carrier === true);
    if (!up) return { status: "failed", detail: `link is ${state.operstate} (want up)` };
    return { status: "ok", detail: state.speedMbps ? `up, ${state.speedMbps} Mb/s` : "up" };
  }

  private address(interfaceName: string | undefined, addresses: InterfaceAddress[] | Error): Outcome {
    if (interfaceName === undefined) return this.noInterface();
    if (addresses instanceof Error)
      return { status: "failed", detail: `cannot list addresses: ${addresses.message}` };
    const held = addresses.filter((entry) => entry.interfaceName === interfaceName);
    if (held.length === 0) return { status: "failed", detail: "no IPv4 address" };
    return { status: "ok", detail: held.map((entry) => entry.cidr).join(", ") };
  }

  private noInterface(): Outcome {
    return {
      status: "failed",
      detail: `no interface holds ${this.options.config.address} and none other than lo is up`,
    };
  }

  /** config.interfaceName, else the one holding config.address, else the first up one but lo. */
  private async chooseInterface(addresses: InterfaceAddress[]): Promise<string | undefined> {
    const { config, system } = this.options;
    if (config.interfaceName) return config.interfaceName;
    const holder = addresses.find((entry) => entry.address === config.address);
    if (holder) return holder.interfaceName;
    for (const name of system.interfaceNames()) {
      if (name === "lo") continue;
      if ((await system.linkState(name)).operstate === "up") return name;
    }
    return undefined;
  }
}

function asOutcome(result: ProbeResult): Outcome {
  return { status: result.ok ? "ok" : "failed", detail: result.detail };
}
