#!/bin/bash
# Debian packages the test suite uses: real servers as test targets (nginx, dnsmasq, redis,
# memcached, vsftpd, MariaDB), logrotate and systemd (systemd-analyze, -tmpfiles, -sysusers) to
# check the shipped rules and units, headless Chromium for the status page, luac5.1 (lua5.1) to
# lint the sandbox's Lua files, groff and lexgrog (groff-base, man-db) to render the man pages
# and dh_installman (debhelper) to install them as the package does, promtool (in prometheus)
# to lint both programs' metrics, and a real IPVS kernel booted in qemu for the kernel tests
# (Debian's kernel, busybox for the initramfs, ipvsadm to check tables); gcc and Python's
# headers to compile the check path (setup.py, mypyc).
# Idempotent: installs only when something is missing. Needs root (or sudo) and apt-get.
set -euo pipefail
PACKAGES=(
  nginx-light dnsmasq-base bind9-dnsutils redis-server memcached vsftpd mariadb-server
  chromium prometheus
  qemu-system-x86 linux-image-amd64 busybox-static ipvsadm cpio kmod xz-utils zstd
  iproute2 procps psmisc util-linux
  logrotate systemd
  lua5.1
  gcc libc6-dev python3-dev
  groff-base man-db debhelper
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "ci-deps: all Debian packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "ci-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
