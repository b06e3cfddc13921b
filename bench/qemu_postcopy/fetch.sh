#!/usr/bin/env bash
# Fetches what bench/qemu_postcopy/run.py needs, without touching the system's apt
# setup: QEMU 10 (qemu-system-x86 and its data, firmware and any shared libraries the
# system lacks) from <codename>-backports, Debian's kernel (linux-image-amd64) from
# <codename>, and busybox-static.
#
# Everything goes into a cache folder (QEMU_POSTCOPY_CACHE, default build/qemu-postcopy
# in the repository). It uses a private apt state inside that folder (its own sources,
# lists and cache) that reuses the system's Debian mirror, `apt-get download`, and
# `dpkg -x` / `dpkg-deb --fsys-tarfile`. The system's dpkg status is only read, to leave
# out libraries that are installed already.
#
# Idempotent: a step whose result is there is skipped. FORCE=1 redoes everything.
#
# Result (in the cache folder):
#   root/                       the extracted packages (qemu in root/usr/bin)
#   env.sh                      QEMU, QEMU_DATA_DIR, QEMU_FIRMWARE_DIRS, QEMU_MODULE_DIR,
#                               LD_LIBRARY_PATH
#   vmlinuz                     the guest kernel
#   busybox                     busybox-static's binary
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${QEMU_POSTCOPY_CACHE:-$repo/build/qemu-postcopy}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

die() { echo "fetch.sh: error: $*" >&2; exit 1; }
note() { echo "fetch.sh: $*" >&2; }

for tool in apt-get apt-cache dpkg dpkg-deb tar; do
  command -v "$tool" >/dev/null || die "'$tool' not found (this script needs a Debian system)"
done

if [ "${FORCE:-0}" = 1 ]; then
  rm -rf "$cache/apt" "$cache/debs" "$cache/root" "$cache/env.sh" "$cache/vmlinuz" \
    "$cache/busybox" "$cache"/*.stamp
fi

# --- Which Debian release and mirror -------------------------------------------------
codename=${DEBIAN_CODENAME:-}
if [ -z "$codename" ] && [ -r /etc/os-release ]; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
fi
[ -n "$codename" ] || die "cannot tell the Debian codename (set DEBIAN_CODENAME, e.g. bookworm)"
backports="$codename-backports"

# The system's mirror: the first URI that serves the plain "<codename>" suite, from
# deb822 files in /etc/apt/sources.list.d/*.sources or one-line /etc/apt/sources.list*.
find_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # Blank-line separated stanzas; print the first URI of one whose Suites has $codename.
    awk -v suite="$codename" '
      function flush() {
        if (is_deb && has_suite && uri != "") { print uri; found = 1; exit }
        is_deb = 0; has_suite = 0; uri = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") is_deb = 1 }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) has_suite = 1 }
      tolower($1) == "enabled:" && tolower($2) == "no" { is_deb = 0 }
      END { if (!found) flush() }
    ' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    # deb [options] URI suite components...
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
      awk -v suite="$codename" '$1 == "deb" && $3 == suite { print $2; exit }'
  done
}
mirror=${DEBIAN_MIRROR:-$(find_mirror | head -n1)}
[ -n "$mirror" ] || die "no Debian mirror for '$codename' in /etc/apt/sources.list{,.d/*} (set DEBIAN_MIRROR)"
mirror=${mirror%/}

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || die "$keyring missing (package debian-archive-keyring)"

# --- Private apt state ----------------------------------------------------------------
apt_dir=$cache/apt
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/preferences.d" "$apt_dir/lists/partial" \
  "$apt_dir/cache/archives/partial" "$apt_dir/state"
: > "$apt_dir/sources.list"
: > "$apt_dir/empty-status"
cat > "$apt_dir/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $mirror
Suites: $codename $backports
Components: main
Signed-By: $keyring
SRC

apt_opts=(
  -o "Dir::Etc::sourcelist=$apt_dir/sources.list"
  -o "Dir::Etc::sourceparts=$apt_dir/sources.list.d"
  -o "Dir::Etc::preferences=$apt_dir/preferences"
  -o "Dir::Etc::preferencesparts=$apt_dir/preferences.d"
  -o "Dir::State=$apt_dir/state"
  -o "Dir::State::lists=$apt_dir/lists"
  -o "Dir::State::status=$apt_dir/empty-status"
  -o "Dir::Cache=$apt_dir/cache"
  -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root"
  -o "Acquire::Languages=none"
  -o "Acquire::Retries=3"
  -o "Acquire::http::Timeout=30"
  -o "Acquire::https::Timeout=30"
)
# Same, but reading the system's dpkg status (read only), so that a simulated install
# lists only what the system lacks.
apt_opts_sys=("${apt_opts[@]}" -o "Dir::State::status=/var/lib/dpkg/status")

if [ ! -e "$apt_dir/update.stamp" ] || [ -n "$(find "$apt_dir/update.stamp" -mmin +1440 2>/dev/null)" ]; then
  note "apt-get update (private state in $apt_dir, mirror $mirror, suites $codename $backports)"
  if ! timeout 900 apt-get "${apt_opts[@]}" -q update >"$apt_dir/update.log" 2>&1 ||
      grep -q '^[EW]: Failed to fetch' "$apt_dir/update.log"; then
    tail -n 20 "$apt_dir/update.log" >&2
    die "apt-get update failed (log: $apt_dir/update.log)"
  fi
  grep -q "$backports" "$apt_dir/update.log" || note "warning: no sign of $backports in the update log"
  touch "$apt_dir/update.stamp"
fi

debs=$cache/debs
mkdir -p "$debs"

# apt-get download into $debs; $@ = package[/suite] or package=version.
download() {
  local log=$debs/download.log
  if ! (cd "$debs" && timeout 1800 apt-get "${apt_opts[@]}" -q download "$@") >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "apt-get download $* failed (log: $log)"
  fi
}

candidate() {  # candidate <package> <suite or ""> -> version that suite offers, or nothing
  local pkg=$1 suite=$2
  apt-cache "${apt_opts[@]}" madison "$pkg" 2>/dev/null |
    awk -F'|' -v s="$suite" '{ gsub(/ /, "", $2); if (s == "" || $3 ~ (" " s "/")) { print $2; exit } }'
}

# --- QEMU from backports, with whatever the system lacks ---------------------------------
root=$cache/root
if [ ! -e "$cache/qemu.stamp" ]; then
  qemu_pkgs=(qemu-system-x86 qemu-system-common qemu-system-data seabios)
  qemu_ver=$(candidate qemu-system-x86 "$backports")
  [ -n "$qemu_ver" ] || die "qemu-system-x86 not found in $backports (see $apt_dir/update.log)"
  note "qemu-system-x86 $qemu_ver from $backports"
  # Simulate an install against the system's dpkg status: the "Inst" lines are exactly
  # the packages to fetch (QEMU's own plus libraries the system lacks). Recommends are
  # left out; -nodefaults means no NIC option ROMs are needed.
  sim_log=$debs/simulate.log
  if ! apt-get "${apt_opts_sys[@]}" -s -q --no-install-recommends -t "$backports" \
      install "${qemu_pkgs[@]}" >"$sim_log" 2>&1; then
    tail -n 30 "$sim_log" >&2
    die "cannot resolve QEMU's dependencies (log: $sim_log)"
  fi
  # "Inst pkg [oldver] (newver suite [arch])"
  mapfile -t wanted < <(awk '$1 == "Inst" { v = $3; if (v ~ /^\[/) v = $4; sub(/^\(/, "", v); print $2 "=" v }' "$sim_log")
  # QEMU's own packages even if (some other version) is installed on the system.
  for p in "${qemu_pkgs[@]}"; do
    grep -q "^$p=" <(printf '%s\n' "${wanted[@]}") || {
      v=$(candidate "$p" "$backports"); [ -n "$v" ] || v=$(candidate "$p" "")
      wanted+=("$p=$v")
    }
  done
  note "downloading ${#wanted[@]} packages: ${wanted[*]}"
  rm -f "$debs"/*.deb.part
  download "${wanted[@]}"
  rm -rf "$root.tmp" && mkdir -p "$root.tmp"
  for spec in "${wanted[@]}"; do
    p=${spec%%=*}
    f=$(ls "$debs/${p}_"*.deb 2>/dev/null | head -n1)
    [ -n "$f" ] || die "downloaded package $p not found in $debs"
    dpkg -x "$f" "$root.tmp" || die "dpkg -x $f failed"
  done
  rm -rf "$root" && mv "$root.tmp" "$root"
  printf '%s\n' "${wanted[@]}" > "$cache/qemu-packages.txt"
  touch "$cache/qemu.stamp"
fi

qemu_bin=$root/usr/bin/qemu-system-x86_64
[ -x "$qemu_bin" ] || die "$qemu_bin missing after extraction (remove $cache/qemu.stamp to retry)"
libpath=$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu
moddir=$(ls -d "$root"/usr/lib/x86_64-linux-gnu/qemu 2>/dev/null || true)
cat > "$cache/env.sh" <<ENV
# Written by fetch.sh: how to run the QEMU it extracted.
QEMU='$qemu_bin'
QEMU_DATA_DIR='$root/usr/share/qemu'
QEMU_FIRMWARE_DIRS='$root/usr/share/qemu:$root/usr/share/seabios:$root/usr/lib/ipxe/qemu'
QEMU_MODULE_DIR='$moddir'
LD_LIBRARY_PATH='$libpath'
ENV
if ! out=$(LD_LIBRARY_PATH=$libpath QEMU_MODULE_DIR=$moddir "$qemu_bin" --version 2>&1); then
  echo "$out" >&2
  LD_LIBRARY_PATH=$libpath ldd "$qemu_bin" 2>&1 | grep 'not found' >&2 || true
  die "the extracted QEMU does not run"
fi
[ -r "$root/usr/share/seabios/bios-256k.bin" ] || die "seabios's bios-256k.bin missing in $root"
note "$(echo "$out" | head -n1)"

# --- Guest kernel from <codename> -----------------------------------------------------------
if [ ! -s "$cache/vmlinuz" ]; then
  # linux-image-amd64 is a metapackage: its Depends names the real image package.
  kpkg=$(apt-cache "${apt_opts[@]}" show --no-all-versions "linux-image-amd64/$codename" 2>/dev/null |
    sed -n 's/^Depends: //p' | tr ',' '\n' | sed 's/^ *//; s/ .*//' | grep '^linux-image-[0-9]' | head -n1)
  [ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 in $codename"
  note "kernel package $kpkg"
  download "$kpkg/$codename"
  f=$(ls "$debs/${kpkg}_"*.deb | head -n1)
  ktmp=$cache/kernel-deb.tmp
  rm -rf "$ktmp" && mkdir -p "$ktmp"
  # Only /boot is needed (the modules are not: the guest loads none).
  dpkg-deb --fsys-tarfile "$f" | tar -x -C "$ktmp" --wildcards './boot/vmlinuz-*' ||
    die "cannot extract the kernel from $f"
  cp "$ktmp"/boot/vmlinuz-* "$cache/vmlinuz.tmp" && mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
  basename "$ktmp"/boot/vmlinuz-* | sed 's/^vmlinuz-//' > "$cache/kernel-version.txt"
  rm -rf "$ktmp" "$f"
fi
note "kernel $(cat "$cache/kernel-version.txt" 2>/dev/null || echo '?')"

# --- busybox-static ------------------------------------------------------------------------
if [ ! -f "$cache/busybox" ] || [ ! -x "$cache/busybox" ]; then
  rm -rf "$cache/busybox"
  download "busybox-static/$codename"
  f=$(ls "$debs"/busybox-static_*.deb | head -n1)
  btmp=$cache/busybox-deb.tmp
  rm -rf "$btmp" && mkdir -p "$btmp"
  dpkg -x "$f" "$btmp" || die "dpkg -x $f failed"
  cp "$btmp/bin/busybox" "$cache/busybox.tmp" && mv "$cache/busybox.tmp" "$cache/busybox"
  rm -rf "$btmp"
fi

note "ready in $cache"
