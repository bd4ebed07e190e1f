// The entries of rtr7's one error catalogue (lib/errors.ts has the error
// class and says what the catalogue is for): each stable code with the HTTP
// status a server of rtr7 answers it with and the hint printed under it,
// grouped by where the errors come from. docs/errors.md documents every
// code; a unit test keeps the two in step.

/** One catalogue entry: the HTTP status the error is answered with, and the hint printed under it. */
export interface CatalogueEntry {
  readonly status: number;
  readonly hint: string;
}

export const errorCatalogue = {
  // Set-up and arguments
  RTR7_ERR_USAGE: { status: 400, hint: "Run the command with --help to see its flags and examples." },
  RTR7_ERR_INTERNAL: {
    status: 500,
    hint: "This is a bug in rtr7: run again with DEBUG=1 and report the stack trace.",
  },
  RTR7_ERR_FILE_MISSING: {
    status: 500,
    hint: "Check the path; image flags take files, --image-dir takes a directory.",
  },
  RTR7_ERR_NOT_ROOT: {
    status: 500,
    hint: "Run as root (sudo): serving DHCP and TFTP needs privileged ports.",
  },
  RTR7_ERR_TOOL_MISSING: {
    status: 500,
    hint: "Run scripts/setup.sh, which installs the Debian packages rtr7 needs.",
  },

  // Network interfaces
  RTR7_ERR_INTERFACE_NONE: {
    status: 500,
    hint: "Bring up the interface that faces the unit and give it one IPv4 address.",
  },
  RTR7_ERR_INTERFACE_AMBIGUOUS: { status: 500, hint: "Choose one with --interface NAME." },
  RTR7_ERR_INTERFACE_NOT_FOUND: {
    status: 500,
    hint: "List interfaces with `ip -br addr` and pass one of them to --interface.",
  },
  RTR7_ERR_INTERFACE_ADDRESS: {
    status: 500,
    hint: "Give the interface exactly one IPv4 address (ip addr add ADDR/PREFIX dev NAME).",
  },

  // Servers
  RTR7_ERR_HTTP_REQUEST: {
    status: 400,
    hint: "The request was malformed (its body, a header or a form value): send it as the endpoint expects.",
  },
  RTR7_ERR_HTTP_NOT_FOUND: {
    status: 404,
    hint: "Check the URL: the server has no such file or endpoint.",
  },
  RTR7_ERR_HTTP_TOO_LARGE: {
    status: 413,
    hint: "Send a smaller body: the endpoint takes small JSON or form bodies only.",
  },
  RTR7_ERR_HTTP_SOURCE: {
    status: 403,
    hint: 'The unit answers loopback, private and link-local addresses only: reach it from its LAN, or name your network in /perm/rtr7/listen.json ("allowSources": ["CIDR"]).',
  },
  RTR7_ERR_HTTP_HOST: {
    status: 421,
    hint: 'Reach the unit by its hostname, HOSTNAME.local or its address; add other names to /perm/rtr7/listen.json ("names").',
  },
  RTR7_ERR_HTTP_CROSS_SITE: {
    status: 403,
    hint: "Changes are taken only from the unit's own pages or from tools (curl, rtr7, gokrazy), never from another web site's page.",
  },
  RTR7_ERR_UPDATE_LOGIN_LIMIT: {
    status: 429,
    hint: "Too many wrong passwords from this address: wait for Retry-After, then use the unit's password from /perm/gokr-pw.txt.",
  },
  RTR7_ERR_HTTP_BUSY: {
    status: 503,
    hint: "The server is serving as many downloads as it allows (in all, or to this address): retry after the time in Retry-After.",
  },
  RTR7_ERR_REPORT_TOKEN: {
    status: 403,
    hint: "Send the run's session token (the unit's rtr7.token= kernel parameter) as `Authorization: Bearer TOKEN`.",
  },
  RTR7_ERR_RECOVERY_PEER: {
    status: 403,
    hint: "The recovery server serves only the unit its DHCP answered, at the address it gave it: boot that unit from the network (or name it with --mac), and fetch nothing from anywhere else.",
  },
  RTR7_ERR_LISTEN: {
    status: 500,
    hint: "Another server (dnsmasq, tftpd, a web server) may hold the port: stop it or pick another port.",
  },
  RTR7_ERR_DHCP_PACKET: {
    status: 400,
    hint: "A malformed DHCP packet was skipped; nothing to do unless it repeats.",
  },
  RTR7_ERR_TFTP_PACKET: {
    status: 400,
    hint: "A malformed TFTP packet was skipped; nothing to do unless it repeats.",
  },

  // Recovery run
  RTR7_ERR_RECOVERY_FAILED: {
    status: 500,
    hint: "Read the unit's message above and its serial console log, fix the cause, then run again.",
  },
  RTR7_ERR_RECOVERY_TIMEOUT: {
    status: 504,
    hint: "Check the unit's cabling and its boot order (or use --serial with --boot-menu), then run again.",
  },
  RTR7_ERR_ABORTED: {
    status: 503,
    hint: "Nothing to fix: the run was stopped (Ctrl-C or a signal) before it finished.",
  },
  RTR7_ERR_KERNEL_PANIC: {
    status: 500,
    hint: "The unit's kernel panicked: read the console log; check --kernel and --initrd.",
  },

  // Backup restore (recovery-init)
  RTR7_ERR_BACKUP_REJECTED: {
    status: 422,
    hint: "The backup holds an entry rtr7 will not restore (a link, device, unsafe name or over a limit); the target was left as it was: list it with `tar tvzf backup.tar.gz` and make a new backup of /perm.",
  },
  RTR7_ERR_BACKUP_CORRUPT: {
    status: 422,
    hint: "The backup is not a complete gzip tar: check it with `tar tzf backup.tar.gz` and download it again, or make a new one.",
  },
  RTR7_ERR_BACKUP_WRITE: {
    status: 500,
    hint: "Writing into the target failed: check that it is mounted read-write and has room (`df -h /perm`), then run the recovery again.",
  },

  // Images on the unit
  RTR7_ERR_IMAGE_FETCH: {
    status: 502,
    hint: "Check that rtr7 recover still runs and serves the image (its log shows each request).",
  },
  RTR7_ERR_IMAGE_VERIFY: {
    status: 500,
    hint: "Rebuild or re-copy the images so they match their manifest; if the read-back differs, replace the unit's disk.",
  },
  RTR7_ERR_IMAGE_TOO_LARGE: {
    status: 413,
    hint: "Build a smaller image: the partition layout is fixed (boot 100 MiB, root 500 MiB).",
  },

  // Wire formats read from the other side
  RTR7_ERR_CMDLINE: {
    status: 400,
    hint: "Boot the recovery through `rtr7 recover`, whose pxelinux config sets rtr7.server=, rtr7.hostname= and rtr7.token=; check any hand-written APPEND line.",
  },
  RTR7_ERR_MANIFEST: {
    status: 422,
    hint: "Rebuild the images with `rtr7 image build`, which writes a matching manifest.json next to them.",
  },
  RTR7_ERR_HEALTH_REPORT: {
    status: 502,
    hint: "The unit's diagd answered something other than a health report: check that port 7733 on the unit runs diagd (open http://UNIT:7733/).",
  },

  // Recovery initramfs (built on the workstation)
  RTR7_ERR_KERNEL_MODULES: {
    status: 500,
    hint: "Use a kernel whose /lib/modules/<release> holds uncompressed .ko files for virtio_blk, e1000 and ext4 (Debian's linux-image-amd64 does), or name that directory explicitly.",
  },
  RTR7_ERR_INITRAMFS_BUILD: {
    status: 500,
    hint: "Read the cause in the message (a bundling error, a library ldd cannot find, an unwritable cache directory), fix it and build again.",
  },

  // Hardware
  RTR7_ERR_REBOOTOR_OPEN: {
    status: 500,
    hint: 'Allow access to the Teensy rebootor with a udev rule in /etc/udev/rules.d/70-rtr7-rebootor.rules: SUBSYSTEM=="hidraw", ATTRS{idVendor}=="16c0", ATTRS{idProduct}=="0477", MODE="0660", GROUP="plugdev" (then `udevadm control --reload` and replug it, and be in group plugdev); or run as root.',
  },
  RTR7_ERR_REBOOTOR_AMBIGUOUS: {
    status: 500,
    hint: "Several rebootors are attached: choose one with --rebootor SERIAL_OR_PATH.",
  },
  RTR7_ERR_REBOOTOR_NOT_FOUND: {
    status: 500,
    hint: "No rebootor matches --rebootor: run `rtr7 reset --list` to see the attached ones.",
  },
  RTR7_ERR_REBOOTOR_WRITE: { status: 500, hint: "Unplug and replug the rebootor, then try again." },
  RTR7_ERR_SERIAL_OPEN: {
    status: 500,
    hint: "Check the --serial path and that no other program (screen, minicom) holds it; you may need to be in the dialout group.",
  },
  RTR7_ERR_BOOT_MENU: {
    status: 500,
    hint: "Watch the console (rtr7 console --serial PATH) and check --boot-menu matches the unit's firmware.",
  },

  // Target disk (recovery-init)
  RTR7_ERR_DISK_NONE: {
    status: 500,
    hint: "Check that the unit's disk is attached and detected (the message lists every block device seen and why it was skipped); name it with rtr7 recover --disk NAME if it was skipped wrongly.",
  },
  RTR7_ERR_DISK_AMBIGUOUS: {
    status: 500,
    hint: "Name the disk to erase with rtr7 recover --disk NAME (for example --disk sda).",
  },
  RTR7_ERR_DISK_NOT_FOUND: {
    status: 500,
    hint: "Check the name given with --disk (rtr7.disk=) against the unit's /sys/block (sda, vda, nvme0n1, mmcblk0).",
  },
  RTR7_ERR_DISK_UNSUITABLE: {
    status: 500,
    hint: "Name a whole, writable disk with --disk (sda, not sda1; not a read-only or write-protected device).",
  },
  RTR7_ERR_DISK_TOO_SMALL: {
    status: 500,
    hint: "Use a disk of at least the size named in the message: boot, two root slots and /perm need about 1.2 GiB.",
  },
  RTR7_ERR_DISK_PARTITION_TABLE: {
    status: 500,
    hint: "The disk's first sector holds no valid MBR partition table: recover the unit again to rewrite it.",
  },

  // Images built on the workstation
  RTR7_ERR_IMAGE_BUILD: {
    status: 500,
    hint: "Read the cause in the message (a missing tool, a file that does not fit, an unreadable --add source), fix it and build again.",
  },

  // The unit's boot partition and update API
  RTR7_ERR_BOOT_CONFIG: {
    status: 500,
    hint: "The boot partition's syslinux.cfg is missing or damaged: push a new boot image (rtr7 safe-update) or recover the unit.",
  },
  RTR7_ERR_UPDATE_AUTH: {
    status: 401,
    hint: "Use user gokrazy and the unit's password from /perm/gokr-pw.txt (kept on the workstation in ~/.config/gokrazy/hosts/HOST/http-password.txt).",
  },
  RTR7_ERR_UPDATE_BUSY: {
    status: 409,
    hint: "Another update is running on the unit: wait for it to finish, then try again.",
  },
  RTR7_ERR_UPDATE_REQUEST: {
    status: 400,
    hint: "Send the request as the update protocol says (PUT for uploads, POST for switch, testboot, commit and reboot).",
  },
  RTR7_ERR_UPDATE_TRUNCATED: {
    status: 400,
    hint: "The upload ended before its end: the slot is marked invalid; upload the image again before switch or testboot.",
  },
  RTR7_ERR_SLOT_INVALID: {
    status: 409,
    hint: "The inactive slot holds no complete root image: upload one (PUT /update/root) before switch or testboot.",
  },
  RTR7_ERR_UPDATE_WRITE: {
    status: 500,
    hint: "Writing to the unit's partition failed: read the unit's log (its console or the update API's status page); if it repeats, recover the unit.",
  },
  RTR7_ERR_UPDATE_VERIFY: {
    status: 500,
    hint: "The unit's partition does not hold what it was sent: the slot is marked invalid; upload again, and if it repeats the unit's disk is failing (recover the unit onto a new disk).",
  },

  // safe-update
  RTR7_ERR_UNIT_UNHEALTHY: {
    status: 503,
    hint: "Make the unit healthy first (read first_error in its /health.json, http://UNIT:7733/), then update again.",
  },
  RTR7_ERR_UPDATE_FAILED: {
    status: 500,
    hint: "Read what failed above; the unit runs the version named there. The run directory's events.jsonl and stderr.log have the details.",
  },

  // The workstation's update client (updates/)
  RTR7_ERR_PASSWORD_MISSING: {
    status: 500,
    hint: "Put the unit's password (its /perm/gokr-pw.txt) in ~/.config/gokrazy/hosts/HOST/http-password.txt, or set RTR7_PASSWORD.",
  },
  RTR7_ERR_UPDATE_HASH: {
    status: 502,
    hint: "The image did not reach the unit intact: push it again; if it repeats, check the network and the unit's disk (read the unit's log).",
  },
  RTR7_ERR_UNIT_UNREACHABLE: {
    status: 502,
    hint: "Check that the unit is powered and on the network (ping it, open http://UNIT:7733/), then run again.",
  },
  RTR7_ERR_UNIT_FAILED: {
    status: 502,
    hint: "Read the unit's message above and its log (its console, or the update API's status page at http://UNIT/).",
  },
  RTR7_ERR_BACKUP_DOWNLOAD: {
    status: 502,
    hint: "Check that backupd runs on the unit (http://UNIT:8077/backup.tar.gz) and read its log, then run again.",
  },
  RTR7_ERR_UNIT_CERT_CHANGED: {
    status: 502,
    hint: "If you changed the unit on purpose (a new unit, a new /perm), accept its certificate with `rtr7 fleet trust HOST`; otherwise something else answers at its address: find out what before sending it a password.",
  },

  // Virtual units (rtr7 lab unit)
  RTR7_ERR_LAB_UNIT: {
    status: 500,
    hint: "Check --dir and --image-dir: a new unit directory is filled from the images of `rtr7 image build`.",
  },

  // Fleets (rtr7 fleet)
  RTR7_ERR_INVENTORY: {
    status: 500,
    hint: "Fix or remove the file named above ($XDG_CONFIG_HOME/rtr7/fleet.json); `rtr7 fleet add` and `rtr7 fleet rm` rewrite it.",
  },
  RTR7_ERR_RELEASE: {
    status: 400,
    hint: "Give --release a directory made by `rtr7 image build` (mbr.img, boot.img, root.img, manifest.json); build without --hostname for a release that fits every unit.",
  },
  RTR7_ERR_FLEET_STATE: {
    status: 500,
    hint: "Check the updates directory's fleet.sqlite (disk space, permissions); `rtr7 fleet status` lists the rollouts it holds.",
  },
  RTR7_ERR_ROLLOUT_NOT_FOUND: {
    status: 404,
    hint: "List the rollouts with `rtr7 fleet status --json`, and check --updates-dir.",
  },

  // Trust (signed releases, rtr7 keys)
  RTR7_ERR_KEY: {
    status: 500,
    hint: "Make the fleet's key with `rtr7 keys init` (it lives in $XDG_CONFIG_HOME/rtr7/keys/); a damaged key file must be restored from your backup of that directory.",
  },
  RTR7_ERR_SIGNATURE: {
    status: 403,
    hint: "Sign releases with the fleet's key (`rtr7 image build` does when `rtr7 keys init` made one), and send the release's files unchanged.",
  },
  // The remote fleet (rtr7 fleet serve, the unit's uplink)
  RTR7_ERR_JOB: {
    status: 400,
    hint: "The job or message is not what rtr7 sends (docs/jobs.md describes each payload); it was logged and skipped, and nothing was installed.",
  },
  RTR7_ERR_UPLINK_CONFIG: {
    status: 400,
    hint: "Fix /perm/rtr7/uplink.json (rtr7 fleet enroll writes it: server, username, password, serverFingerprint) and restart the uplink; the rest of the unit runs without it.",
  },
  RTR7_ERR_UPLINK_TLS: {
    status: 502,
    hint: "The server's certificate is not the one pinned for it. If the server's certificate changed on purpose, enroll the unit again; otherwise something stands between the unit and its server.",
  },
  RTR7_ERR_UPLINK_DOWNLOAD: {
    status: 502,
    hint: "The release's files could not be fetched whole from its base URL (the message says which and why); check the release store or CDN, then let the server send the job again.",
  },
  RTR7_ERR_DOWNGRADE: {
    status: 409,
    hint: "This release was signed before the one the unit runs. If you mean to go back, pass --allow-downgrade.",
  },
  RTR7_ERR_BROKER: {
    status: 502,
    hint: "Check the broker's address and port (another process may hold the port; --listen and --broker choose them) and the server's TLS files in DATA/tls/.",
  },
  RTR7_ERR_FLEET_AUTH: {
    status: 401,
    hint: "Give the fleet server's credential: the admin's (DATA/admin-credential.json, copied to the workstation) for publish, rollouts and enroll, or the unit's own (its uplink.json) for its backups.",
  },
  RTR7_ERR_RELEASE_EXISTS: {
    status: 409,
    hint: "A published release never changes (units may be downloading it): build the new one with a new --version and publish that.",
  },
} as const satisfies Record<string, CatalogueEntry>;
