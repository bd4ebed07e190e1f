// How `rtr7 recover` shows the unit's byte progress: a progress bar per image
// on a terminal, one JSON line per report with --json, nothing otherwise (the
// step lines are logged anyway). Presentation only: the numbers come from the
// unit's POST /progress reports.
import type { ProgressReport } from "../lib/wire/report.js";
import type { Logger } from "../lib/log.js";

export interface ProgressView {
  update(report: ProgressReport): void;
  stop(): void;
}

export async function progressView(options: {
  json: boolean;
  log: Logger;
  terminal: boolean;
  /** Where the bar is drawn; default stderr. */
  stream?: NodeJS.WritableStream;
}): Promise<ProgressView> {
  if (options.json) {
    return {
      update: (report) => {
        if (report.bytesDone !== undefined)
          options.log.info({ subsystem: "unit", event: "progress", ...report }, "progress");
      },
      stop: () => undefined,
    };
  }
  if (!options.terminal) return { update: () => undefined, stop: () => undefined };
  const { SingleBar, Presets } = (await import("cli-progress")).default;
  let bar: InstanceType<typeof SingleBar> | undefined;
  let image: string | undefined;
  const stop = (): void => {
    bar?.stop();
    bar = undefined;
  };
  return {
    update(report) {
      if (report.bytesDone === undefined || report.bytesTotal === undefined || report.image === undefined)
        return;
      if (report.image !== image) {
        stop();
        image = report.image;
        bar = new SingleBar(
          {
            format: `  ${report.image.padEnd(10)} [{bar}] {percentage}% | {done}/{size} MiB | {eta_formatted} left`,
            hideCursor: true,
            clearOnComplete: false,
            ...(options.stream ? { stream: options.stream, noTTYOutput: true, notTTYSchedule: 0 } : {}),
          },
          Presets.shades_classic,
        );
        bar.start(report.bytesTotal, 0, { done: "0.0", size: (report.bytesTotal / 2 ** 20).toFixed(1) });
      }
      bar?.update(report.bytesDone, { done: (report.bytesDone / 2 ** 20).toFixed(1) });
      if (report.bytesDone >= report.bytesTotal) stop();
    },
    stop,
  };
}
