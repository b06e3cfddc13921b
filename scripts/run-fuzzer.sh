#!/usr/bin/env bash
# run-fuzzer.sh FUZZER SEED_DIR WORK_DIR: runs one libFuzzer target for
# $FUZZ_SECONDS (default 20) seconds. It first replays every seed in SEED_DIR
# (the corpus checked in under fuzz/corpus/), then mutates; what it learns goes
# to WORK_DIR/corpus, never into the repository. A crash, a broken invariant, a
# sanitizer report, a leak or an input slower than 10 s fails the run and
# leaves the input in WORK_DIR/artifacts/.
set -euo pipefail
fuzzer=$1
seeds=$2
work=$3
mkdir -p "$work/corpus" "$work/artifacts"
exec "$fuzzer" -max_total_time="${FUZZ_SECONDS:-20}" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds"
