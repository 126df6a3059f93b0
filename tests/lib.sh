# Shared preamble of the CLI tests (sourced): a private temporary folder $T, removed at exit,
# and the pass / fail counters with ok, bad MESSAGE and check COMMAND...
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if "$@"; then ok; else bad "$*"; fi; }
