#!/usr/bin/env bash
# Set-up for rtr7 on Debian 12, as root: installs the Debian packages the
# tools and tests use (only those missing), the npm dependencies, and builds.
# Safe to run again: it skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  qemu-system-x86 ipxe-qemu pxelinux syslinux syslinux-common syslinux-efi extlinux
  kexec-tools mtools dosfstools squashfs-tools e2fsprogs fdisk busybox-static
  linux-image-amd64 udhcpc isc-dhcp-client curl tftp-hpa tftpd-hpa dnsmasq nginx
  socat iproute2 tshark avahi-utils avahi-daemon dbus-daemon prometheus cpio ovmf strace time minisign
  mosquitto mosquitto-clients
)
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run this script as root (sudo $0) to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Answer tshark's "may non-superusers capture" question without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts these daemons on install; rtr7's tests start their own.
  for service in tftpd-hpa dnsmasq nginx mosquitto; do
    systemctl disable --now "$service" >/dev/null 2>&1 || service "$service" stop >/dev/null 2>&1 || true
  done
fi

if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

npm run --silent build
