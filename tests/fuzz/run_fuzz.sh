#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs every libFuzzer target of a `fuzz` build for a fixed time from its seeds.
#
#   tests/fuzz/run_fuzz.sh BUILD_DIR SECONDS [TARGET...]
#
# Seeds are copied into BUILD_DIR/fuzz-work/corpus-<target> (new inputs stay there, not in the
# source tree). Prints the executions of each target; a crash, leak, timeout or sanitizer report
# leaves its input as BUILD_DIR/fuzz-work/crash-<target>-* and fails the run (commit it under
# tests/fuzz/regressions/<target>/ with the fix: fuzz.replay.<target> then replays it).
set -u
build=$1 secs=$2
shift 2
work=$build/fuzz-work
mkdir -p "$work"
status=0
while read -r t seeds; do
    if [ $# -gt 0 ]; then
        case " $* " in *" $t "*) ;; *) continue ;; esac
    fi
    corpus=$work/corpus-$t
    mkdir -p "$corpus"
    for d in $seeds; do
        [ -d "$d" ] && find "$d" -maxdepth 1 -type f -size -64k -exec cp {} "$corpus/" \;
    done
    log=$work/$t.log
    "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$work/crash-$t-" "$corpus" > "$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    if [ "$rc" = 0 ]; then
        echo "fuzz $t: ${execs:-?} executions in ${secs}s, no crash"
    else
        echo "fuzz $t: FAILED (exit $rc) after ${execs:-?} executions; last lines of $log:"
        tail -n 30 "$log"
        status=1
    fi
done < "$build/fuzz_seeds.txt"
exit $status
