{{header}}
# NTFS grants for the dedicated agent account {{account}}: read (and execute) on the
# folders granted for reading, modify on those granted for writing, nothing else.
# Paths under the manifest's ~ are taken under %USERPROFILE%; other paths have no
# Windows meaning and are listed in $Skipped. Idempotent. Exit 0 on success, 1 on failure.
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$Account = {{account}}
$Grants = @(
{{grants}}
)
$Skipped = {{skipped}}

try {
  foreach ($g in $Grants) {
    $path = Join-Path $env:USERPROFILE $g.Relative
    if (-not (Test-Path -LiteralPath $path)) { Write-Warning ('{0} does not exist; not granted' -f $path); continue }
    $right = if ($g.Write) { 'M' } else { 'RX' }
    & icacls.exe $path /grant:r ('{0}:(OI)(CI){1}' -f $Account, $right) /Q | Out-Null
    if ($LASTEXITCODE -ne 0) { throw ('icacls failed on {0}' -f $path) }
  }
  exit 0
} catch {
  Write-Error $_
  exit 1
}
