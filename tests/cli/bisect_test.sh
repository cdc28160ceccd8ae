#!/bin/sh
# SPDX-License-Identifier: MIT
# logitcheck bisect on a scratch repository with a planted regression in one commit of four:
# it must name that commit and its first diverging stage, and leave the repository's own
# checkout as it was (no build or report directory in it, HEAD unmoved).
#
#   bisect_test.sh LOGITCHECK SOURCE_DIR WORK_DIR
set -eu
LC=$1 SRC=$2 W=$3
rm -rf "$W"
mkdir -p "$W/repo"
(cd "$SRC" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$W/repo") # the tracked tree as it is now
cd "$W/repo"
git init -q
git config user.email bisect@test.invalid
git config user.name bisect-test
git add -A
git commit -qm "base"
echo "a harmless change" >> cases/README.md
git commit -qam "docs"
# the planted regression: every input norm uses ten times the configured epsilon
sed -i 's/cfg->rms_norm_eps \* (f->input_norm_eps_scale > 0 ? f->input_norm_eps_scale : 1)/cfg->rms_norm_eps * 10/' \
    reference/model.c
if git diff --quiet; then echo "bisect_test: the plant did not apply to reference/model.c"; exit 1; fi
git commit -qam "norms: one epsilon expression"
echo "another harmless change" >> cases/README.md
git commit -qam "more docs"
planted=$(git rev-parse HEAD~1)
head_before=$(git rev-parse HEAD)
if ! "$LC" bisect HEAD~3 HEAD dense.golden.text --repo "$W/repo" --work "$W/bisect" > "$W/out.txt" 2> "$W/err.txt"; then
    cat "$W/out.txt" "$W/err.txt"; tail -20 "$W/bisect/build.log" "$W/bisect/run.log" 2>/dev/null; exit 1
fi
cat "$W/out.txt"
grep -q "^first bad commit: $planted norms: one epsilon expression\$" "$W/out.txt" ||
    { echo "bisect_test: expected the first bad commit $planted"; exit 1; }
grep -q "^first diverging stage: dense\.golden\.text: after layer 0 " "$W/out.txt" ||
    { echo "bisect_test: expected the first diverging stage after layer 0"; exit 1; }
test "$(git rev-parse HEAD)" = "$head_before" || { echo "bisect_test: the repository's HEAD moved"; exit 1; }
test ! -e build && test ! -e build-f64 && test ! -e logitcheck-report ||
    { echo "bisect_test: a build or report directory appeared in the repository"; exit 1; }
test -z "$(git status --porcelain --untracked-files=no)" || { echo "bisect_test: the checkout changed"; exit 1; }
echo "bisect_test: ok"
