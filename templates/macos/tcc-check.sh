#!/bin/bash
{{header}}
# Reports TCC drift for {{nameShell}}: exit 0 when the agent ({{bundleShell}}) holds no
# privacy grant beyond its manifest, 1 listing every drifting service, 2 when a
# database cannot be read. Checks the user's and the system TCC.db (full disk access is
# needed to read them); --db PATH replaces them (repeatable).
set -euo pipefail

BUNDLE_ID={{bundleId}}
SQL_ID=${BUNDLE_ID//\'/\'\'}
ALLOWED=({{allowed}})

dbs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --db) dbs+=("$2"); shift 2 ;;
    *) echo "usage: $0 [--db PATH]..." >&2; exit 2 ;;
  esac
done
if [ ${#dbs[@]} -eq 0 ]; then
  dbs=("$HOME/Library/Application Support/com.apple.TCC/TCC.db" "/Library/Application Support/com.apple.TCC/TCC.db")
fi

drift=()
for db in "${dbs[@]}"; do
  if ! rows=$(sqlite3 -readonly -batch -noheader "$db" "SELECT service FROM access WHERE client = '${SQL_ID}' AND client_type = 0 AND auth_value IN (2, 3);" 2>&1); then
    echo "cannot read ${db}: ${rows}" >&2
    exit 2
  fi
  while IFS= read -r service; do
    [ -n "$service" ] || continue
    ok=0
    for a in "${ALLOWED[@]}"; do [ "$a" = "$service" ] && ok=1; done
    [ "$ok" = 1 ] || drift+=("${service} (in ${db})")
  done <<< "$rows"
done

if [ ${#drift[@]} -gt 0 ]; then
  echo "TCC drift for ${BUNDLE_ID}: granted beyond its manifest:"
  printf '  %s\n' "${drift[@]}"
  exit 1
fi
echo "no TCC drift for ${BUNDLE_ID}"
exit 0
