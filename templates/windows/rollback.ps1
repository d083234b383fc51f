{{header}}
# Removes everything the agentbox scripts for {{name}} added: its firewall rules, its
# App Control policy, and the NTFS grants of its account. Safe to run more than once.
# Exit 0 on success, 1 on failure.
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$Group = {{group}}
$PolicyId = {{policyId}}
$Account = {{account}}
$Relative = {{relative}}

try {
  Get-NetFirewallRule -Group $Group -ErrorAction SilentlyContinue | Remove-NetFirewallRule
  if (Get-Command CiTool.exe -ErrorAction SilentlyContinue) {
    & CiTool.exe --remove-policy ('{{{0}}}' -f $PolicyId) -json | Out-Null
  } else {
    $file = Join-Path $env:windir ('System32\CodeIntegrity\CiPolicies\Active\{0}.cip' -f $PolicyId)
    if (Test-Path -LiteralPath $file) { Remove-Item -LiteralPath $file -Force }
  }
  foreach ($r in $Relative) {
    $path = Join-Path $env:USERPROFILE $r
    if (Test-Path -LiteralPath $path) { & icacls.exe $path /remove:g $Account /Q | Out-Null }
  }
  exit 0
} catch {
  Write-Error $_
  exit 1
}
