// Choosing the interface that faces the unit and the address it is offered.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chooseRecoveryNetwork, networkFor, type InterfaceWorld } from "../../server/net/interfaces.js";
import { isRtr7Error } from "../../lib/errors.js";

const v4 = (address: string, netmask = "255.255.255.0", internal = false) => ({
  family: "IPv4",
  address,
  netmask,
  internal,
});
const v6 = { family: "IPv6", address: "fe80::1", netmask: "ffff:ffff:ffff:ffff::", internal: false };

function world(list: ReturnType<InterfaceWorld["list"]>, down: string[] = []): InterfaceWorld {
  return { list: () => list, isUp: (name) => !down.includes(name) };
}

test("the default is the first up, non-loopback interface with exactly one IPv4 address", () => {
  const network = chooseRecoveryNetwork(
    { recoverOctet: 1 },
    world(
      {
        lo: [v4("127.0.0.1", "255.0.0.0", true)],
        eth0: [v4("192.168.5.10"), v6],
        eth1: [v4("10.0.0.2")],
      },
      [],
    ),
  );
  assert.deepEqual(network, {
    interfaceName: "eth0",
    serverAddress: "192.168.5.10",
    netmask: "255.255.255.0",
    prefixLength: 24,
    unitAddress: "192.168.5.1",
  });
});

test("interfaces that are down or have several addresses are passed over", () => {
  const network = chooseRecoveryNetwork(
    { recoverOctet: 7 },
    world({ eth0: [v4("192.168.5.10")], eth1: [v4("10.0.0.2"), v4("10.0.1.2")], eth2: [v4("172.16.1.1")] }, [
      "eth0",
    ]),
  );
  assert.equal(network.interfaceName, "eth2");
  assert.equal(network.unitAddress, "172.16.1.7");
});

test("no usable interface, or only ones with several addresses, is a clear error", () => {
  assert.throws(
    () =>
      chooseRecoveryNetwork(
        { recoverOctet: 1 },
        world({ lo: [v4("127.0.0.1", "255.0.0.0", true)], eth0: [v6] }),
      ),
    (error) => isRtr7Error(error, "RTR7_ERR_INTERFACE_NONE"),
  );
  assert.throws(
    () => chooseRecoveryNetwork({ recoverOctet: 1 }, world({ eth0: [v4("10.0.0.2"), v4("10.0.1.2")] })),
    (error) => isRtr7Error(error, "RTR7_ERR_INTERFACE_ADDRESS") && /eth0/.test(error.message),
  );
});

test("a named interface must exist and have exactly one IPv4 address", () => {
  const list = { eth0: [v4("10.0.0.2"), v4("10.0.1.2")], eth1: [v6] };
  assert.throws(
    () => chooseRecoveryNetwork({ interfaceName: "wlan0", recoverOctet: 1 }, world(list)),
    (error) => isRtr7Error(error, "RTR7_ERR_INTERFACE_NOT_FOUND") && /eth0, eth1/.test(error.message),
  );
  assert.throws(
    () => chooseRecoveryNetwork({ interfaceName: "eth0", recoverOctet: 1 }, world(list)),
    (error) =>
      isRtr7Error(error, "RTR7_ERR_INTERFACE_ADDRESS") && /10\.0\.0\.2, 10\.0\.1\.2/.test(error.message),
  );
  assert.throws(
    () => chooseRecoveryNetwork({ interfaceName: "eth1", recoverOctet: 1 }, world(list)),
    (error) => isRtr7Error(error, "RTR7_ERR_INTERFACE_ADDRESS") && /none/.test(error.message),
  );
});

test("the netmask comes from the interface, not an assumed /24", () => {
  assert.equal(networkFor("eth0", "10.1.2.3", "255.255.0.0", 9).unitAddress, "10.1.0.9");
  assert.equal(networkFor("eth0", "10.1.2.3", "255.255.0.0", 9).prefixLength, 16);
  assert.equal(networkFor("eth0", "192.168.1.130", "255.255.255.128", 200).unitAddress, "192.168.1.200");
});

test("an octet outside the network, on the server itself, or a bad mask is refused", () => {
  assert.throws(
    () => networkFor("eth0", "192.168.1.130", "255.255.255.128", 1),
    (error) => isRtr7Error(error, "RTR7_ERR_USAGE"),
  );
  assert.throws(
    () => networkFor("eth0", "192.168.1.1", "255.255.255.0", 1),
    (error) => isRtr7Error(error, "RTR7_ERR_USAGE") && /own address/.test(error.message),
  );
  assert.throws(
    () => networkFor("eth0", "10.0.0.1", "255.0.255.0", 2),
    (error) => isRtr7Error(error, "RTR7_ERR_INTERFACE_ADDRESS"),
  );
  assert.throws(
    () => networkFor("eth0", "10.0.0.1", "255.255.255.0", 255),
    (error) => isRtr7Error(error, "RTR7_ERR_USAGE"),
  );
});
