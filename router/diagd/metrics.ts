// diagd's /metrics (Prometheus text format, prom-client, its own Registry):
//
// - per-interface counters from /sys/class/net/*/statistics, read by collect
//   callbacks at every scrape, so each scrape shows the kernel's values of
//   that moment and an interface that disappeared is simply absent;
// - rtr7_diagd_healthy from the last evaluation (refreshed in the background
//   when older than healthMaxAgeMs, so a scrape never waits for pings),
//   or from a fresh one when there is none yet;
// - the supervisor's counters from its status file (zeros when missing);
// - rtr7_build_info and prom-client's default process and Node.js metrics.
//
// The counters are set (reset, then inc by the absolute value) rather than
// incremented: the kernel keeps the count, diagd only reports it.
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import { readSupervisorState, type SupervisorState } from "../supervisor/state.js";
import type { ServiceConfig } from "../unit.js";
import type { Evaluation } from "./health.js";
import type { SystemView } from "./system.js";

export interface MetricsOptions {
  config: ServiceConfig;
  system: SystemView;
  health: { evaluate(): Promise<Evaluation>; last(): Evaluation | undefined };
  /** Default 10 s. */
  healthMaxAgeMs?: number;
  now?: () => number;
}

/** Metric name part → the file in /sys/class/net/IF/statistics. */
const interfaceCounters = [
  ["receive_bytes", "rx_bytes", "Bytes received"],
  ["transmit_bytes", "tx_bytes", "Bytes transmitted"],
  ["receive_packets", "rx_packets", "Packets received"],
  ["transmit_packets", "tx_packets", "Packets transmitted"],
  ["receive_errors", "rx_errors", "Receive errors"],
  ["transmit_errors", "tx_errors", "Transmit errors"],
  ["receive_dropped", "rx_dropped", "Received packets dropped"],
  ["transmit_dropped", "tx_dropped", "Packets dropped on transmit"],
] as const;

export function buildMetricsRegistry(options: MetricsOptions): Registry {
  const { config, system } = options;
  const now = options.now ?? Date.now;
  const healthMaxAgeMs = options.healthMaxAgeMs ?? 10_000;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client's nodejs_active_{handles,requests,resources}_total are gauges
  // with a counter's suffix, which `promtool check metrics` flags; their
  // per-type versions without the suffix stay.
  for (const metric of registry.getMetricsAsArray()) {
    const { name, type } = metric as unknown as { name: string; type: string };
    if (name.endsWith("_total") && type !== "counter") registry.removeSingleMetric(name);
  }

  for (const [name, file, help] of interfaceCounters) {
    new Counter({
      name: `rtr7_network_${name}_total`,
      help: `${help} by the interface, as the kernel counts them (/sys/class/net/IF/statistics/${file}).`,
      labelNames: ["interface"],
      registers: [registry],
      collect() {
        const values: [string, number][] = [];
        for (const interfaceName of system.interfaceNames()) {
          const value = system.statistic(interfaceName, file);
          if (value !== undefined) values.push([interfaceName, value]);
        }
        this.reset();
        for (const [interfaceName, value] of values) this.inc({ interface: interfaceName }, value);
      },
    });
  }

  new Gauge({
    name: "rtr7_diagd_healthy",
    help: "1 when diagd's last health evaluation found no failed check, else 0.",
    registers: [registry],
    async collect() {
      const last = options.health.last();
      let evaluation = last;
      if (!last) evaluation = await options.health.evaluate();
      else if (now() - last.finishedAtMs > healthMaxAgeMs) void options.health.evaluate();
      this.set(evaluation?.report.first_error === "" ? 1 : 0);
    },
  });

  // The four supervisor metrics are collected in the same scrape; they share one read of the file.
  let stateRead: Promise<SupervisorState | undefined> | undefined;
  const supervisorState = (): Promise<SupervisorState | undefined> => {
    stateRead ??= readSupervisorState(config.paths.run).finally(() => {
      stateRead = undefined;
    });
    return stateRead;
  };
  const supervisorCounter = (
    name: string,
    help: string,
    value: (counters: SupervisorState["counters"]) => number,
  ): void => {
    new Counter({
      name,
      help,
      registers: [registry],
      async collect() {
        const state = await supervisorState();
        this.reset();
        this.inc(nonNegative(state ? value(state.counters) : 0));
      },
    });
  };
  supervisorCounter(
    "rtr7_updates_total",
    "Root, boot and mbr uploads completed since boot.",
    (c) => c.updates,
  );
  supervisorCounter(
    "rtr7_update_failures_total",
    "Uploads that ended early or failed since boot.",
    (c) => c.failedUpdates,
  );
  supervisorCounter(
    "rtr7_rollbacks_total",
    "Boots that came back on the old slot after an uncommitted trial.",
    (c) => c.rollbacks,
  );
  new Counter({
    name: "rtr7_supervisor_restarts_total",
    help: "Restarts of each service since the supervisor started.",
    labelNames: ["service"],
    registers: [registry],
    async collect() {
      const state = await supervisorState();
      this.reset();
      for (const service of state?.services ?? [])
        this.inc({ service: service.name }, nonNegative(service.restarts));
    },
  });

  const buildInfo = new Gauge({
    name: "rtr7_build_info",
    help: "Always 1; the labels say which image the unit runs.",
    labelNames: ["version", "slot", "hostname"],
    registers: [registry],
  });
  buildInfo.set({ version: config.version, slot: config.slot, hostname: config.hostname }, 1);
  return registry;
}

/** A counter value from a file someone else wrote: a finite number ≥ 0, else 0. */
function nonNegative(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : 0;
}
