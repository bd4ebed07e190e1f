// What the update API's replies share besides errors (which lib/http-error.ts
// answers in rtr7's one shape, with the catalogue's status): whether the
// client asked for JSON. JSON replies go out through lib/http-error.ts's
// sendJson with exactly `Content-Type: application/json`: gokrazy's updater
// fetches `/` with `Accept: application/json` when the features reply is
// text, and refuses any other Content-Type (logging "could not get EEPROM
// version" on every run), so fastify's `application/json; charset=utf-8`
// must not go out.
export { sendJson } from "../../lib/http-error.js";

export function wantsJson(accept: string | undefined): boolean {
  return accept !== undefined && /\bapplication\/json\b/i.test(accept);
}
