#!/usr/bin/env bash
# Writes the counter list of man/vrelayd.8 (between its GENERATED COUNTERS marks) from
# common/counters.def, where every counter is declared once. Run it after changing
# counters.def; the man.counters test fails until the page matches.
#   scripts/man-counters.sh [SRCDIR]
set -euo pipefail
src="${1:-$(dirname "$0")/..}"
def="$src/common/counters.def"
page="$src/man/vrelayd.8"

# counters.def -> man source: ".SS group: help" per group, ".TP" + name + help per counter.
generate() {
  sed -nE -e 's/^VRELAY_GROUP_BEGIN\(([a-z_]+), "(.*)"\)$/G\t\1\t\2/p' \
          -e 's/^VRELAY_COUNTER\(([a-z_]+), ([a-z_0-9]+), ([a-z]+), "(.*)"\)$/C\t\1.\2\t\3\t\4/p' "$def" |
  awk -F'\t' '
    function roff(text) { gsub(/-/, "\\-", text); return text }
    $1 == "G" { help = $3; help = tolower(substr(help, 1, 1)) substr(help, 2); print ".SS " $2 ": " roff(help) }
    $1 == "C" { print ".TP"; print ".BR " $2 " \" (" $3 ")\""; print roff($4) "." }'
}

begin='.\" BEGIN GENERATED COUNTERS (scripts/man-counters.sh)'
end='.\" END GENERATED COUNTERS'
grep -qxF "$begin" "$page" && grep -qxF "$end" "$page" || { echo "$page: no GENERATED COUNTERS marks" >&2; exit 1; }
generate > "$page.counters"
# The marks go through the environment: awk -v would eat their backslashes.
BEGIN_MARK="$begin" END_MARK="$end" awk -v list="$page.counters" '
  $0 == ENVIRON["BEGIN_MARK"] { print; while ((getline line < list) > 0) print line; skip = 1; next }
  $0 == ENVIRON["END_MARK"] { skip = 0 }
  !skip { print }' "$page" > "$page.tmp"
mv "$page.tmp" "$page"
rm -f "$page.counters"
