// diagd's page at `/`: the evaluation as a tree, as router7's diagd draws it,
// for a person with a browser: the unit (hostname, version, slot), its
// interface, the interface's checks, and below the gateway the targets that
// are reached through it. Every value is HTML-escaped: check details quote
// diagd.json and error messages, which are not ours to trust.
import type { HealthCheck } from "../../lib/wire/health.js";
import type { Evaluation } from "./health.js";

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
}

const style = `
body { font-family: sans-serif; margin: 2em; }
ul { list-style: none; border-left: 1px solid #ccc; margin: 0.2em 0; padding-left: 1.2em; }
li { margin: 0.2em 0; }
.ok { color: #080; } .failed { color: #b00; font-weight: bold; } .skipped { color: #888; }
.detail { color: #444; font-weight: normal; } .ms { color: #999; font-size: 85%; }
`;

export function renderHealthPage(evaluation: Evaluation): string {
  const { report } = evaluation;
  const verdict =
    report.first_error === ""
      ? `<p class="ok">healthy</p>`
      : `<p class="failed">unhealthy: ${escapeHtml(report.first_error)}</p>`;
  const gateway = evaluation.interfaceChecks.find((check) => check.name.startsWith("gateway"));
  const interfaceItems = evaluation.interfaceChecks.map((check) =>
    checkItem(check, check === gateway ? evaluation.targetChecks : []),
  );
  // Without a gateway check (no interface at all) the targets hang off the unit.
  const orphans = gateway ? [] : evaluation.targetChecks.map((check) => checkItem(check, []));
  const unit = `unit ${report.hostname} (version ${report.version}, slot ${report.slot}${report.trial ? ", on trial" : ""}, up ${report.uptime_seconds} s)`;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>diagd: ${escapeHtml(report.hostname)}</title>
<style>${style}</style></head>
<body>
<h1>diagd: ${escapeHtml(report.hostname)}</h1>
${verdict}
<ul class="tree">
<li>${escapeHtml(unit)}
<ul>
<li>interface ${escapeHtml(evaluation.interfaceName ?? "(none)")}
<ul>
${interfaceItems.join("\n")}
</ul>
</li>
${orphans.join("\n")}
</ul>
</li>
</ul>
<p><a href="/health.json">health.json</a> · <a href="/metrics">metrics</a></p>
</body></html>
`;
}

function checkItem(check: HealthCheck, children: HealthCheck[]): string {
  const nested =
    children.length === 0
      ? ""
      : `\n<ul>\n${children.map((child) => checkItem(child, [])).join("\n")}\n</ul>\n`;
  return (
    `<li class="${check.status}">${escapeHtml(check.name)}: ${check.status}` +
    ` <span class="detail">${escapeHtml(check.detail)}</span> <span class="ms">${check.ms} ms</span>${nested}</li>`
  );
}
