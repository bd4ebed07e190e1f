// The update API's status page (GET /, behind the same password as the
// updates, as gokrazy's is): hostname, version, which slot runs and whether
// on trial, which slot is committed, what each slot holds, and the
// supervisor's services. HTML for a browser; the same facts as JSON for
// `Accept: application/json`. Every value is escaped: service names and
// versions come from files an image ships.
import { describeError } from "../../lib/errors.js";
import type { BootControl } from "../boot/boot-control.js";
import type { Slot } from "../unit.js";
import { readSlotStates, type SlotStates } from "./slot-state.js";

export interface StatusService {
  name: string;
  state: string;
  pid?: number;
  restarts?: number;
  lastExit?: string;
}

/** What the supervisor tells the status page (deps.statusPage). */
export interface StatusPageInfo {
  hostname?: string;
  version?: string;
  model?: string;
  services?: StatusService[];
}

export interface StatusFacts extends StatusPageInfo {
  running: { slot: Slot; trial: boolean };
  /** The committed slot, or why it could not be read. */
  committed: Slot | { error: string };
  /** The recorded slot states, or why they could not be read. */
  slots: SlotStates | { error: string };
  /** Set when deps.statusPage failed. */
  statusError?: string;
}

export function renderStatusPage(facts: StatusFacts): string {
  const hostname = facts.hostname ?? "rtr7 unit";
  const committed =
    typeof facts.committed === "string" ? facts.committed : `unknown (${facts.committed.error})`;
  const rows: [string, string][] = [
    ["hostname", hostname],
    ["version", facts.version ?? "unknown"],
    ["model", facts.model ?? "unknown"],
    ["running slot", `${facts.running.slot}${facts.running.trial ? " (on trial, not committed)" : ""}`],
    ["committed slot", committed],
  ];
  if ("error" in facts.slots && typeof facts.slots.error === "string") {
    rows.push(["slots", `unknown (${facts.slots.error})`]);
  } else {
    const states = facts.slots as SlotStates;
    for (const slot of ["a", "b"] as const) {
      const state = states[slot];
      rows.push([
        `slot ${slot}`,
        !state
          ? "no upload recorded"
          : state.state === "complete"
            ? `complete: ${state.size} bytes, ${state.algorithm} ${state.hash}, ${state.time}`
            : state.state === "writing"
              ? `writing since ${state.since}`
              : `invalid: ${state.why} (${state.time})`,
      ]);
    }
  }
  const services = facts.services ?? [];
  const serviceRows = services
    .map(
      (service) =>
        `<tr><td>${escapeHtml(service.name)}</td><td>${escapeHtml(service.state)}</td><td>${escapeHtml(
          service.pid?.toString() ?? "",
        )}</td><td>${escapeHtml(service.restarts?.toString() ?? "")}</td><td>${escapeHtml(service.lastExit ?? "")}</td></tr>`,
    )
    .join("\n");
  return [
    "<!DOCTYPE html>",
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>${escapeHtml(hostname)} — rtr7</title></head><body>`,
    `<h1>${escapeHtml(hostname)}</h1>`,
    facts.statusError ? `<p>Service status unavailable: ${escapeHtml(facts.statusError)}</p>` : "",
    "<table>",
    ...rows.map(([name, value]) => `<tr><th>${escapeHtml(name)}</th><td>${escapeHtml(value)}</td></tr>`),
    "</table>",
    "<h2>Services</h2>",
    services.length === 0
      ? "<p>none reported</p>"
      : `<table><tr><th>name</th><th>state</th><th>pid</th><th>restarts</th><th>last exit</th></tr>\n${serviceRows}\n</table>`,
    "</body></html>",
    "",
  ].join("\n");
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
}

/** What the page shows: the caller's facts, the running and committed slots, and each slot's state; a fact that cannot be read says why. */
export async function gatherStatusFacts(deps: {
  statusPage?: () => Promise<StatusPageInfo>;
  boot: Pick<BootControl, "committedSlot" | "running">;
  perm: string;
}): Promise<StatusFacts> {
  let info: StatusPageInfo = {};
  let statusError: string | undefined;
  try {
    info = (await deps.statusPage?.()) ?? {};
  } catch (error) {
    statusError = describeError(error);
  }
  const committed = await deps.boot
    .committedSlot()
    .catch((error: unknown) => ({ error: describeError(error) }));
  const slots = await readSlotStates(deps.perm).catch((error: unknown) => ({
    error: describeError(error),
  }));
  return { ...info, running: deps.boot.running(), committed, slots, ...(statusError ? { statusError } : {}) };
}
