// diagd, router7's diagnostics service, on port 7733: `/health.json` (the
// verdict safe-update and the fleet commands read), `/` (the same as an HTML
// tree for people) and `/metrics` (Prometheus). Runs as its own process,
// started by the supervisor as `service diagd`. Errors (a check that throws,
// an unknown path) are answered in rtr7's one JSON shape (lib/http-error.ts).
import Fastify, { type FastifyInstance } from "fastify";
import { installErrorHandlers } from "../../lib/http-error.js";
import type { Logger } from "../../lib/log.js";
import type { RunningService, ServiceMain } from "../services.js";
import type { ServiceConfig } from "../unit.js";
import { defaultConnectionCaps } from "../http-guard/connection-caps.js";
import { guardUnitApp, listenUnitApp } from "../http-guard/serve.js";
import { unitTlsListen } from "../http-guard/unit-tls.js";
import { HealthEvaluator } from "./health.js";
import { buildMetricsRegistry } from "./metrics.js";
import { renderHealthPage } from "./page.js";
import { realSystem, type SystemView } from "./system.js";

export interface DiagdOptions {
  config: ServiceConfig;
  log: Logger;
  /** The machine to check; default the real one. */
  system?: SystemView;
  checkTimeoutMs?: number;
}

export function buildDiagdApp(options: DiagdOptions): FastifyInstance {
  const { config, log } = options;
  const system = options.system ?? realSystem();
  const evaluator = new HealthEvaluator({
    config,
    system,
    ...(options.checkTimeoutMs === undefined ? {} : { checkTimeoutMs: options.checkTimeoutMs }),
  });
  const registry = buildMetricsRegistry({ config, system, health: evaluator });
  const app = Fastify({ logger: false, return503OnClosing: true });
  guardUnitApp(app, config, log);
  let lastVerdict: string | undefined;

  const evaluate = async () => {
    const evaluation = await evaluator.evaluate();
    const verdict = evaluation.report.first_error;
    if (verdict !== lastVerdict) {
      if (verdict === "") log.info({ event: "healthy" }, "healthy");
      else log.warn({ event: "unhealthy", first_error: verdict }, `unhealthy: ${verdict}`);
      lastVerdict = verdict;
    }
    return evaluation;
  };

  app.get("/health.json", async (_request, reply) => {
    const evaluation = await evaluate();
    return reply.header("cache-control", "no-store").send(evaluation.report);
  });
  app.get("/", async (_request, reply) => {
    const evaluation = await evaluate();
    return reply
      .header("cache-control", "no-store")
      .type("text/html; charset=utf-8")
      .send(renderHealthPage(evaluation));
  });
  app.get("/metrics", async (_request, reply) => {
    const body = await registry.metrics();
    return reply.header("cache-control", "no-store").type(registry.contentType).send(body);
  });
  installErrorHandlers(app, {
    log,
    notFoundHint: "diagd serves /health.json, /metrics and / (the health page).",
  });
  return app;
}

export const diagdMain: ServiceMain = async (config, log) => {
  const app = buildDiagdApp({ config, log });
  const tls = await unitTlsListen(config, "diagd", log);
  await listenUnitApp(app, config, config.ports.diagd, "diagd", log, defaultConnectionCaps, tls);
  return { close: () => app.close() } satisfies RunningService;
};
