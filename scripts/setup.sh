#!/usr/bin/env bash
# Prepare a fresh machine for pcifleet: Debian packages (when root and apt-get exist) and a
# virtual environment in .venv with pcifleet and its pinned dependencies. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: pci.ids names (hwdata), libvirt's schema validator (with xmllint, which it
# runs and libvirt-clients only recommends) and the headers that
# libvirt-python builds against, Open vSwitch's ovsdb-server and the hardware_vtep schema,
# iproute2 for network namespaces in the netlink tests.
DEBS=(hwdata pciutils iproute2 libvirt-clients libxml2-utils libvirt-dev pkg-config openvswitch-switch openvswitch-vtep)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for deb in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "ok installed" || missing+=("$deb")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.pcifleet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  if pkg-config --exists libvirt 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check 'libvirt-python==12.8.0' \
      || echo "setup: libvirt-python did not build; libvirt parser tests will skip"
  fi
  touch "$stamp"
fi
