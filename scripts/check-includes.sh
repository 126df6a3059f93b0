#!/usr/bin/env bash
# The include rule (README.md, "Include rule"): every #include "folder/..." in src/<folder>/
# must name the folder itself or one its row of the README table allows. Prints each
# violation as FILE:LINE and exits 1 if there is any.
set -euo pipefail
cd "$(dirname "$0")/.."
rules=$(sed -n '/<!-- include-rule: begin -->/,/<!-- include-rule: end -->/p' README.md |
    awk -F'|' 'NR > 3 && NF > 3 { gsub(/^ +| +$/, "", $2); gsub(/^ +| +$/, "", $3); print $2 ":" $3 }')
[ -n "$rules" ] || { echo "check-includes: no include table in README.md" >&2; exit 1; }
bad=0
for dir in src/*/; do
    f=$(basename "$dir")
    allowed=$(printf '%s\n' "$rules" | awk -F: -v f="$f" '$1 == f { print $2 }')
    if ! printf '%s\n' "$rules" | grep -q "^$f:"; then
        echo "check-includes: src/$f/ has no row in README.md's include table" >&2
        bad=1
        continue
    fi
    while IFS=: read -r file line inc; do
        to=$(printf '%s' "$inc" | sed -n 's/^#include "\([a-z_]*\)\/.*/\1/p')
        [ -n "$to" ] || continue
        [ "$to" = "$f" ] && continue
        case " $allowed " in *" $to "*) continue ;; esac
        echo "$file:$line: src/$f may not include $to/ (README.md include table): $inc" >&2
        bad=1
    done < <(grep -Hn '^#include "[a-z_]*/' "$dir"*.[ch] 2>/dev/null || true)
done
for file in cli/*.[ch]; do
    if grep -n '^#include "[a-z_]*/' "$file" > /dev/null; then
        grep -Hn '^#include "[a-z_]*/' "$file" | sed 's/$/: cli\/ includes only include\//' >&2
        bad=1
    fi
done
[ "$bad" -eq 0 ] && echo "check-includes: every include follows the rule"
exit "$bad"
