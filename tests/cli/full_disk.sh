#!/bin/sh
# SPDX-License-Identifier: MIT
# Every output the CLI writes, onto a file system that refuses the write:
#
#   full_disk.sh MODE LOGITCHECK SOURCE_DIR TEXT_CASES_DIR WORKDIR
#
#   enospc  a 2 MiB tmpfs filled to the last block (needs root and mount; else exit 77: skip)
#   erofs   a tmpfs remounted read-only                (needs root and mount; else exit 77: skip)
#   efbig   a file-size limit of 1 KiB (ulimit -f), which the CLI must survive as EFBIG
#
# With VALGRIND set (the valgrind program) every command also runs under valgrind, and a leak or
# an invalid access on these error paths fails the test.
#
# For each output (infer's HDF5 file, the run's reports, bench's JSON) an earlier file sits at
# the target. The command must exit 2 with one line on stderr naming the target and the
# system's reason, leave the earlier file byte-identical and leave no temporary file behind.
set -u
mode=$1 lc=$2 src=$3 cases=$4 work=$5
ck=$src/golden/tiny-dense
ids=$(seq -s, 1 40)

mnt=""
cleanup() {
    if [ -n "$mnt" ]; then umount "$mnt" 2>/dev/null; fi
}
trap cleanup EXIT
fail() {
    echo "FAIL ($mode): $*" >&2
    exit 1
}

rm -rf "$work"
mkdir -p "$work/dest"
dest=$work/dest
case "$mode" in
enospc | erofs)
    [ "$(id -u)" = 0 ] || { echo "SKIP: $mode needs root to mount a tmpfs"; exit 77; }
    mount -t tmpfs -o size=2m tmpfs "$dest" 2>/dev/null || { echo "SKIP: cannot mount a tmpfs here"; exit 77; }
    mnt=$dest
    reason="No space left on device"
    [ "$mode" = erofs ] && reason="Read-only file system"
    ;;
efbig)
    reason="File too large"
    ;;
*)
    fail "unknown mode"
    ;;
esac

# the earlier outputs
mkdir -p "$dest/report"
for f in out.h5 bench.json report/results.json report/report.md report/junit.xml report/report.html; do
    printf 'earlier output %s\n' "$f" > "$dest/$f" || fail "cannot write the earlier $f"
done
sum_before=$(cd "$dest" && cat out.h5 bench.json report/* | cksum)

if [ "$mode" = enospc ]; then
    dd if=/dev/zero of="$dest/fill" bs=4096 2>/dev/null
    [ "$(df -P "$dest" | awk 'NR==2 {print $4}')" = 0 ] || fail "the tmpfs is not full"
elif [ "$mode" = erofs ]; then
    mount -o remount,ro "$dest" || fail "cannot remount read-only"
fi

# check NAME TARGET COMMAND...: exit 2, one line naming TARGET and the reason, nothing left over
check() {
    name=$1 target=$2
    shift 2
    if [ "$mode" = efbig ]; then
        (ulimit -f 1 && shift && lc_run "$@") > "$work/$name.out" 2> "$work/$name.err"
    else
        (shift && lc_run "$@") > "$work/$name.out" 2> "$work/$name.err"
    fi
    rc=$?
    [ "$rc" = 2 ] || fail "$name: exit code $rc, expected 2; stderr: $(cat "$work/$name.err")"
    [ "$(wc -l < "$work/$name.err")" = 1 ] || fail "$name: expected one line on stderr: $(cat "$work/$name.err")"
    grep -q "$target" "$work/$name.err" || fail "$name: the message does not name $target: $(cat "$work/$name.err")"
    grep -q "$reason" "$work/$name.err" || fail "$name: the message does not say '$reason': $(cat "$work/$name.err")"
    left=$(find "$dest" -name '*.tmp-*' | head -1)
    [ -z "$left" ] || fail "$name: temporary file left behind: $left"
    echo "ok $name: $(cat "$work/$name.err")"
}

lc_run() {
    if [ -n "${VALGRIND:-}" ]; then
        exec "$VALGRIND" -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
            ${VALGRIND_SUPP:+--suppressions=$VALGRIND_SUPP} "$lc" "$@"
    fi
    exec "$lc" "$@"
}

check infer "$dest/out.h5" "$lc" infer --model "$ck" --ids "$ids" --out "$dest/out.h5"
check run.report "$dest/report" "$lc" run dense.golden.text --root "$src" --cases "$cases" \
    --report "$dest/report"
check bench.json "$dest/bench.json" "$lc" bench --model "$ck" --prompt 8 --decode 2 --repeat 1 --gemm 0 \
    --json "$dest/bench.json"

sum_after=$(cd "$dest" && cat out.h5 bench.json report/* | cksum)
[ "$sum_before" = "$sum_after" ] || fail "an earlier output changed"
for f in out.h5 bench.json report/results.json report/report.md report/junit.xml report/report.html; do
    [ "$(cat "$dest/$f")" = "earlier output $f" ] || fail "the earlier $f changed"
done
echo "all outputs refused cleanly ($reason), earlier files intact"
