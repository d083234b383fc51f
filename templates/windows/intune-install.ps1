{{header}}
# Intune Win32 app install command: powershell.exe -ExecutionPolicy Bypass -File install.ps1
# Applies the firewall rules, the NTFS grants and the App Control policy (audit mode;
# pass -Enforce to enforce) for agent {{name}}. Exit 0 on success, 1 on any failure.
param([switch]$Enforce)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$steps = {{steps}}
foreach ($s in $steps) {
  $script = Join-Path $PSScriptRoot $s
  if ($s -like '*wdac*' -and $Enforce) { & $script -Enforce } else { & $script }
  if ($LASTEXITCODE -ne 0) { Write-Error ('{0} failed with exit code {1}' -f $s, $LASTEXITCODE); exit 1 }
}
exit 0
