// How a rollout shows itself while it runs: on a terminal, one progress line
// per active unit (cli-progress's MultiBar: its step, and the bytes of the
// image being pushed), with a line printed above the bars as each unit
// ends; with --json, one JSON event per wave, unit start, step and end;
// otherwise one log line per wave and per unit that ends. Presentation only:
// the engine's observer calls drive it.
import type { Logger } from "../lib/log.js";
import type { RolloutObserver } from "../updates/fleet/engine.js";
import type { RolloutUnit } from "../updates/fleet/store.js";

export interface RolloutView extends RolloutObserver {
  stop(): void;
}

const endLine = (unit: RolloutUnit): string => {
  const seconds =
    unit.startedAt && unit.finishedAt
      ? ` in ${Math.round((Date.parse(unit.finishedAt) - Date.parse(unit.startedAt)) / 1000)} s`
      : "";
  const versions = `${unit.fromVersion ?? "?"} → ${unit.toVersion ?? "?"}`;
  return `${unit.hostname}: ${unit.state} (${versions})${seconds}${unit.reason ? `: ${unit.reason}` : ""}`;
};

const unitEvent = (unit: RolloutUnit): Record<string, unknown> => ({
  unit: unit.hostname,
  address: unit.address,
  wave: unit.wave,
  state: unit.state,
  step: unit.step,
  from: unit.fromVersion,
  to: unit.toVersion,
  runDir: unit.runDir,
  reason: unit.reason,
});

export async function rolloutView(options: {
  json: boolean;
  terminal: boolean;
  log: Logger;
}): Promise<RolloutView> {
  const { log } = options;
  if (options.json || !options.terminal) {
    return {
      onWave: (wave, units) =>
        log.info(
          { event: "wave", wave, units: units.map((unit) => unit.hostname) },
          `Wave ${wave}${wave === 0 ? "" : ""}: ${units.map((unit) => unit.hostname).join(", ")}`,
        ),
      onUnitStart: (unit) =>
        options.json
          ? log.info({ event: "unit-start", ...unitEvent(unit) }, `${unit.hostname} starts`)
          : undefined,
      onUnitStep: (unit, step) =>
        options.json
          ? log.info({ event: "unit-step", unit: unit.hostname, step }, `${unit.hostname}: ${step}`)
          : undefined,
      onUnitEnd: (unit) => {
        const record = { event: "unit-end", ...unitEvent(unit) };
        if (unit.state === "failed") log.error(record, endLine(unit));
        else if (unit.state === "skipped") log.warn(record, endLine(unit));
        else log.info(record, endLine(unit));
      },
      onHalt: (reason) => log.warn({ event: "halt", reason }, `Halting the rollout: ${reason}.`),
      stop: () => undefined,
    };
  }
  const { MultiBar, Presets } = (await import("cli-progress")).default;
  const bars = new MultiBar(
    {
      format: "  {unit} {step} [{bar}] {detail}",
      hideCursor: true,
      clearOnComplete: true,
      stopOnComplete: false,
      autopadding: true,
    },
    Presets.shades_classic,
  );
  const active = new Map<string, ReturnType<typeof bars.create>>();
  const width = { unit: 8 };
  return {
    onWave: (wave, units) => {
      width.unit = Math.max(width.unit, ...units.map((unit) => unit.hostname.length));
      bars.log(`wave ${wave}: ${units.map((unit) => unit.hostname).join(", ")}\n`);
    },
    onUnitStart: (unit) => {
      active.set(
        unit.hostname,
        bars.create(1, 0, { unit: unit.hostname.padEnd(width.unit), step: "health".padEnd(8), detail: "" }),
      );
    },
    onUnitStep: (unit, step) => active.get(unit.hostname)?.update(0, { step: step.padEnd(8), detail: "" }),
    onUnitProgress: (unit, progress) => {
      const bar = active.get(unit.hostname);
      if (!bar) return;
      bar.setTotal(Math.max(1, progress.bytesTotal));
      bar.update(progress.bytesDone, {
        detail: `${progress.image} ${(progress.bytesDone / 2 ** 20).toFixed(1)}/${(progress.bytesTotal / 2 ** 20).toFixed(1)} MiB`,
      });
    },
    onUnitEnd: (unit) => {
      const bar = active.get(unit.hostname);
      if (bar) bars.remove(bar);
      active.delete(unit.hostname);
      bars.log(`${endLine(unit)}\n`);
    },
    onHalt: (reason) => bars.log(`Halting the rollout: ${reason}.\n`),
    stop: () => bars.stop(),
  };
}
