#!/bin/sh
# The README's TLS walk-through ("TLS, step by step"), run as written: a CA, a
# server and a client certificate made with openssl, then serve-pages, a
# handler and (where KVM runs the test guest) a VM restored over TLS, and
# mutual TLS. A ctest runs it (tls_walkthrough); with --check-readme README.md
# it first checks that every command of the README's walk-through is one of
# its own, so the two cannot drift apart.
#
# Usage: scripts/tls-walkthrough.sh FAULTLINE_BINARY SCRATCH_DIR [--check-readme README]
set -eu

FAULTLINE_BIN=$1
DIR=$2
SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

if [ "${3:-}" = "--check-readme" ]; then
  # The README's commands: the lines of its sh block after the marker.
  commands=$(sed -n '/<!-- tls-walkthrough: scripts\/tls-walkthrough.sh -->/,/^```$/p' "$4" |
             sed '1,2d;$d' | grep -v '^#' | grep -v '^$' | sed 's/ *\\$//')
  [ -n "$commands" ] || { echo "no TLS walk-through found in $4" >&2; exit 1; }
  echo "$commands" | while IFS= read -r line; do
    grep -qF -- "$line" "$SCRIPT" || { echo "README command not in $SCRIPT: $line" >&2; exit 1; }
  done
fi

PATH=$(cd "$(dirname "$FAULTLINE_BIN")" && pwd):$PATH
export PATH
mkdir -p "$DIR"
cd "$DIR"
rm -f fc-uffd.sock fc-uffd.sock.stats
PIDS=""
trap 'for p in $PIDS; do kill "$p" 2>/dev/null || true; done' EXIT

# Waits until FILE contains TEXT (a daemon's startup line), or fails.
wait_for() {
  i=0
  until grep -qF "$2" "$1" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 500 ] || { echo "no \"$2\" in $1:" >&2; cat "$1" >&2; exit 1; }
    sleep 0.02
  done
}
# Runs a handler until its stats answer (it checked the server at startup), then stops it.
handler_starts() {
  "$@" 2>handler.log &
  h=$!
  i=0
  until faultline stats --socket fc-uffd.sock >/dev/null 2>&1; do
    kill -0 $h 2>/dev/null || { echo "the handler did not start:" >&2; cat handler.log >&2; exit 1; }
    i=$((i + 1))
    [ $i -lt 500 ] || { echo "the handler did not answer" >&2; exit 1; }
    sleep 0.02
  done
  kill $h
  wait $h
}

# Something to serve: a snapshot of the test guest where KVM runs it, else any file.
if faultline vm run --ram 64M --snapshot-after-progress 1 --state vm.state --mem vm.mem --quiet \
    >vm-run.log 2>&1; then
  KVM=yes
else
  KVM=no
  head -c 16777216 /dev/urandom >vm.mem
fi

# 1. A certificate authority: its key stays with whoever issues certificates.
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 365 \
  -subj "/CN=faultline example CA" -keyout ca.key -out ca.crt \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign

# 2. The page server's certificate: its subjectAltName names every address clients use.
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -subj "/CN=pages.example" -keyout server.key -out server.csr
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
  -extfile server.ext -out server.crt

# 3. A client certificate, for mutual TLS.
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -subj "/CN=handler-1" -keyout client.key -out client.csr
printf 'extendedKeyUsage=clientAuth\n' >client.ext
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
  -extfile client.ext -out client.crt

# 4. TLS: the server proves who it is; clients verify it against the CA.
faultline serve-pages --listen tcp:127.0.0.1:7443 --mem-file vm.mem --ram-start 0 --tls-cert server.crt --tls-key server.key 2>server.log &
PIDS="$PIDS $!"
wait_for server.log "serving pages"
if [ $KVM = yes ]; then
faultline vm restore --state vm.state --page-server tcp:127.0.0.1:7443 --tls-ca ca.crt --quiet
fi
handler_starts faultline handle --socket fc-uffd.sock --page-server tcp:127.0.0.1:7443 --tls-ca ca.crt
kill $PIDS
wait
PIDS=""

# 5. Mutual TLS: the server also requires a client certificate signed by the CA.
faultline serve-pages --listen tcp:127.0.0.1:7443 --mem-file vm.mem --ram-start 0 --tls-cert server.crt --tls-key server.key --tls-ca ca.crt 2>server.log &
PIDS="$PIDS $!"
wait_for server.log "serving pages"
if [ $KVM = yes ]; then
faultline vm restore --state vm.state --page-server tcp:127.0.0.1:7443 --tls-ca ca.crt --tls-cert client.crt --tls-key client.key --quiet
fi
handler_starts faultline handle --socket fc-uffd.sock --page-server tcp:127.0.0.1:7443 --tls-ca ca.crt --tls-cert client.crt --tls-key client.key
# Without a client certificate the handler does not start, and says why.
if faultline handle --socket fc-uffd.sock --page-server tcp:127.0.0.1:7443 --tls-ca ca.crt 2>refused.log; then
  echo "a handler without a client certificate started" >&2
  exit 1
fi
grep -F "the server requires a client certificate: give --tls-cert and --tls-key" refused.log ||
  { echo "the refusal does not say what to give:" >&2; cat refused.log >&2; exit 1; }

echo "TLS walk-through: every step worked (VM restore: $KVM)"
