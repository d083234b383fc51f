{{header}}
# Intune detection rule (custom script): prints and exits 0 when the agentbox controls
# for {{name}} are installed, exits 1 with no output otherwise.
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$Group = {{group}}
$rules = @(Get-NetFirewallRule -Group $Group -ErrorAction SilentlyContinue)
if ($rules.Count -gt 0) {
  Write-Output ('agentbox {0}: {1} firewall rules installed' -f $Group, $rules.Count)
  exit 0
}
exit 1
