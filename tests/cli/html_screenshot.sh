#!/bin/sh
# SPDX-License-Identifier: MIT
# The HTML report in a browser: headless Chromium renders the report of a planted regression;
# the screenshot must show the failing rows' colour, the plots' curve (blue), the bound and the
# points above it (red), and the page's script must have run (sortable column heads).
# Exit 77 (skipped) where no chromium is installed.
#
#   html_screenshot.sh LOGITCHECK PNG_COLORS SOURCE_DIR WORK_DIR
set -eu
LC=$1 COLORS=$2 SRC=$3 W=$4
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$CHROME" ]; then echo "html_screenshot: no chromium here (apt-get install chromium)"; exit 77; fi
rm -rf "$W" && mkdir -p "$W"
cd "$W"
set +e
"$LC" run dense.golden.text --root "$SRC" --inject rms_eps=1e-5 --report R > run.txt 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || { cat run.txt; echo "html_screenshot: the planted run exited $rc, expected 1"; exit 1; }
flags="--headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir=$W/profile"
"$CHROME" $flags --window-size=1280,2600 --screenshot="$W/shot.png" "file://$W/R/report.html" > chrome.txt 2>&1 ||
    { cat chrome.txt; exit 1; }
"$CHROME" $flags --dump-dom "file://$W/R/report.html" > dom.html 2> chrome-dom.txt || { cat chrome-dom.txt; exit 1; }
grep -q '<th title="sort"' dom.html || { echo "html_screenshot: the sorting script did not run"; exit 1; }
"$COLORS" shot.png fce8e6 1a73e8 d93025 > colors.txt
cat colors.txt
fail_bg=$(awk '$1=="fce8e6"{print $2}' colors.txt)
blue=$(awk '$1=="1a73e8"{print $2}' colors.txt)
red=$(awk '$1=="d93025"{print $2}' colors.txt)
[ "$fail_bg" -gt 20000 ] || { echo "html_screenshot: no failing rows drawn ($fail_bg pixels)"; exit 1; }
[ "$blue" -gt 300 ] || { echo "html_screenshot: no plot curve drawn ($blue pixels)"; exit 1; }
[ "$red" -gt 300 ] || { echo "html_screenshot: no bound or failing points drawn ($red pixels)"; exit 1; }
echo "html_screenshot: ok"
