// Names that travel from the workstation to a unit: its hostname (the disk
// identifier is its FNV-1a, recovery puts it on the kernel command line,
// the updates directory names a folder by it), the disk recovery-init
// erases (rtr7.disk=) and the MAC the recovery server locks onto. Each is
// checked here, once, before it is put anywhere: a value with a space or an
// `=` could add kernel parameters, one with a `/` could leave its folder.
import { Rtr7Error } from "../errors.js";
import { quoteInput as quoted } from "../quote.js";

const hostnamePattern = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** A host name: letters, digits and inner hyphens, at most 63 (one DNS label). */
export function checkedHostname(text: string): string {
  if (!hostnamePattern.test(text))
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `hostname ${quoted(text)}: want a host name (letters, digits and inner hyphens, at most 63)`,
    );
  return text;
}

/** A disk name for the kernel command line: sda, vda, nvme0n1, mmcblk0 (a /dev/ prefix is dropped). */
export function checkedDiskName(text: string): string {
  const name = text.replace(/^\/dev\//, "");
  if (!/^[a-z][a-z0-9]{1,31}$/.test(name))
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `disk ${quoted(text)}: want a whole disk's name such as sda, vda or nvme0n1`,
    );
  return name;
}

/** aa:bb:cc:dd:ee:ff in lower case, from colon, dash or bare hex forms. */
export function normaliseMac(text: string): string {
  const hex = text.toLowerCase().replace(/[:-]/g, "");
  if (!/^[0-9a-f]{12}$/.test(hex))
    throw new Rtr7Error("RTR7_ERR_USAGE", `MAC address ${quoted(text)}: want one such as 52:54:00:12:34:56`);
  return hex.replace(/(..)(?!$)/g, "$1:");
}
