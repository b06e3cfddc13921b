#!/usr/bin/env bash
# timed.sh NAME COMMAND...: runs COMMAND and says how long it took, so that the
# CI log shows where `make test` spends its time.
set -euo pipefail
name=$1
shift
start=$(date +%s)
"$@"
echo "== ${name}: done in $(($(date +%s) - start)) s"
