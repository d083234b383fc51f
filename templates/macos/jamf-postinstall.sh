#!/bin/bash
{{header}}
# Jamf policy script for agent {{nameShell}} (runs as root): installs the pf anchor,
# references it from /etc/pf.conf once, loads it, then reports TCC drift. The PPPC
# profile is deployed separately as a Jamf configuration profile. Exit 0 on success.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ANCHOR={{anchorName}}
ANCHOR_FILE={{anchorFile}}

install -m 0644 "$HERE/$(basename "$ANCHOR_FILE")" "$ANCHOR_FILE"
if ! grep -qF 'anchor "com.agentbox/*"' /etc/pf.conf; then
  printf '%s\n' 'anchor "com.agentbox/*"' >> /etc/pf.conf
fi
pfctl -a "$ANCHOR" -f "$ANCHOR_FILE"
pfctl -E >/dev/null 2>&1 || true
"$HERE/{{tccCheck}}" || echo "TCC drift reported above (exit $?)"
exit 0
