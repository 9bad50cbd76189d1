#!/bin/bash
# Build the Debian package surealived_<version>_<arch>.deb (dh-virtualenv: the program and its
# Python dependencies in /opt/venvs/surealived, /usr/bin/surealived and /usr/sbin/ipvssync
# linked to it, both systemd units, sysusers, tmpfiles, logrotate and modules-load files, and
# the man pages of contrib/man).
#
#   contrib/build-deb.sh [OUTDIR]        default OUTDIR: dist/
#
# Needs Debian 12 or later with: apt-get install debhelper dh-virtualenv python3-dev python3-venv
# and the package index reachable (the dependencies are installed as wheels while building).
# The package is built from the committed tree (git archive HEAD), in a temporary folder.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$here/dist}")
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/pyproject.toml" | head -1)
[ -n "$version" ] || { echo "build-deb: no version in pyproject.toml" >&2; exit 1; }

missing=()
for tool in dpkg-buildpackage dh dh_virtualenv; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-deb: missing ${missing[*]}:" \
       "apt-get install debhelper dh-virtualenv python3-dev python3-venv dpkg-dev" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src="$work/surealived-$version"
mkdir -p "$src"
git -C "$here" archive --format=tar HEAD | tar -x -C "$src"
cp -a "$here/contrib/debian" "$src/debian"
cat > "$src/debian/changelog" <<EOF
surealived ($version) unstable; urgency=medium

  * Version $version (built from $(git -C "$here" rev-parse --short HEAD)).

 -- SureAliveD maintainers <root@localhost>  $(date -R)
EOF

# A clean PATH: pyenv shims or an active venv would make the build use another python3.
(cd "$src" && env -i HOME="$work" PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
   ${PIP_INDEX_URL:+PIP_INDEX_URL="$PIP_INDEX_URL"} \
   dpkg-buildpackage -us -uc -b)

mkdir -p "$out"
cp "$work"/surealived_"$version"_*.deb "$out"/
ls -l "$out"/surealived_"$version"_*.deb
