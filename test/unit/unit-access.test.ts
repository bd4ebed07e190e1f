// Whom the recovery servers serve (server/pxe/unit-access.ts): nobody before
// the locked MAC's ACK (also with --mac), then only the address that ACK
// gave; and the recovery HTTP server asking it for every file, the manifest
// and the password (403 RTR7_ERR_RECOVERY_PEER), while reports stay
// token-only.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  afterAck,
  initialAccessState,
  mayFetch,
  type UnitAccessState,
} from "../../server/pxe/unit-access.js";
import { buildRecoveryHttp } from "../../server/http/recovery-http.js";
import { FileMap, fileFromBuffer } from "../../lib/served-files.js";
import { silentLogger } from "../../lib/log.js";

const unitMac = "52:54:00:12:34:56";
const unitAddress = "10.0.0.1";
const other = "10.0.0.9";

test("before any ACK nobody is served, with or without --mac", () => {
  for (const state of [initialAccessState(), initialAccessState(unitMac)]) {
    for (const peer of [unitAddress, other]) {
      const decision = mayFetch(state, { peerAddress: peer, resource: "pxelinux.cfg/default" });
      assert.equal(decision.allowed, false);
      assert.ok(!decision.allowed && /no DHCP ACK/.test(decision.reason));
    }
  }
});

test("after the ACK only the address it gave is served", () => {
  const state = afterAck(initialAccessState(), { mac: unitMac.toUpperCase(), address: unitAddress });
  assert.deepEqual(state, { lockedMac: unitMac, unitAddress });
  assert.deepEqual(mayFetch(state, { peerAddress: unitAddress, resource: "pxelinux.cfg/default" }), {
    allowed: true,
  });
  assert.deepEqual(mayFetch(state, { peerAddress: `::ffff:${unitAddress}`, resource: "/root.img" }), {
    allowed: true,
  });
  const refused = mayFetch(state, { peerAddress: other, resource: "pxelinux.cfg/default" });
  assert.ok(!refused.allowed);
  assert.match(
    refused.reason,
    /only to the unit being recovered \(52:54:00:12:34:56 at 10\.0\.0\.1\), not 10\.0\.0\.9/,
  );
});

test("--mac: an ACK for another MAC binds nothing; the locked MAC's ACK does", () => {
  const locked: UnitAccessState = initialAccessState(unitMac);
  assert.deepEqual(afterAck(locked, { mac: "52:54:00:ff:ff:ff", address: other }), locked);
  const bound = afterAck(locked, { mac: unitMac, address: unitAddress });
  assert.equal(mayFetch(bound, { peerAddress: unitAddress, resource: "initrd" }).allowed, true);
});

test("the recovery HTTP server refuses others every file, the manifest and the password", async (t) => {
  const token = "f".repeat(32);
  let state = initialAccessState();
  const { app } = buildRecoveryHttp({
    files: new FileMap([fileFromBuffer("root.img", "ROOT BYTES"), fileFromBuffer("initrd", "INITRD BYTES")]),
    manifest: { images: [] },
    token,
    log: silentLogger(),
    password: () => Promise.resolve("the-unit-password"),
    refuse: (peerAddress, resource) => {
      const decision = mayFetch(state, { peerAddress, resource });
      return decision.allowed ? undefined : decision.reason;
    },
  });
  t.after(() => app.close());
  const auth = { authorization: `Bearer ${token}` };
  const paths = ["/root.img", "/initrd", "/manifest.json", "/credentials"];
  for (const url of paths) {
    const early = await app.inject({ url, remoteAddress: unitAddress, headers: auth });
    assert.equal(early.statusCode, 403, `${url} before the ACK`);
    assert.equal((JSON.parse(early.body) as { code: string }).code, "RTR7_ERR_RECOVERY_PEER");
  }
  state = afterAck(state, { mac: unitMac, address: unitAddress });
  for (const url of paths) {
    const refused = await app.inject({ url, remoteAddress: other, headers: auth });
    assert.equal(refused.statusCode, 403, url);
    const body = JSON.parse(refused.body) as { code: string; message: string };
    assert.equal(body.code, "RTR7_ERR_RECOVERY_PEER", url);
    assert.match(body.message, /from 10\.0\.0\.9: served only to the unit/);
    assert.doesNotMatch(refused.body, /the-unit-password|ROOT BYTES|INITRD BYTES/);
    const head = await app.inject({ method: "HEAD", url, remoteAddress: other, headers: auth });
    assert.equal(head.statusCode, 403, `HEAD ${url}`);
    const served = await app.inject({ url, remoteAddress: unitAddress, headers: auth });
    assert.equal(served.statusCode, 200, url);
  }
  const noToken = await app.inject({ url: "/credentials", remoteAddress: unitAddress });
  assert.equal((JSON.parse(noToken.body) as { code: string }).code, "RTR7_ERR_REPORT_TOKEN");
  const report = await app.inject({
    method: "POST",
    url: "/progress",
    remoteAddress: other,
    headers: auth,
    payload: { step: "write" },
  });
  assert.notEqual(report.statusCode, 403, "reports are checked by the token, not the address");
});
