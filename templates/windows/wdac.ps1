{{header}}
# Converts the App Control for Business (WDAC) policy beside this script and deploys
# it. Audit mode by default: blocks are only logged (CodeIntegrity event 3076). Run with
# -Enforce to remove audit mode (events 3077 become blocks). Uses CiTool where it exists
# (Windows 11 22H2+), else the CiPolicies\Active folder and a refresh. Exit 0 or 1.
param([switch]$Enforce)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$PolicyId = {{policyId}}
$Xml = Join-Path $PSScriptRoot {{xmlFile}}

try {
  $work = Join-Path $env:TEMP ('agentbox-{0}.xml' -f $PolicyId)
  Copy-Item -LiteralPath $Xml -Destination $work -Force
  if ($Enforce) { Set-RuleOption -FilePath $work -Option 3 -Delete }
  $binary = Join-Path $env:TEMP ('{0}.cip' -f $PolicyId)
  ConvertFrom-CIPolicy -XmlFilePath $work -BinaryFilePath $binary | Out-Null
  if (Get-Command CiTool.exe -ErrorAction SilentlyContinue) {
    & CiTool.exe --update-policy $binary -json | Out-Null
    if ($LASTEXITCODE -ne 0) { throw 'CiTool --update-policy failed' }
  } else {
    $active = Join-Path $env:windir 'System32\CodeIntegrity\CiPolicies\Active'
    Copy-Item -LiteralPath $binary -Destination (Join-Path $active ('{0}.cip' -f $PolicyId)) -Force
    Invoke-CimMethod -Namespace 'root\Microsoft\Windows\CI' -ClassName 'PS_UpdateAndCompareCIPolicy' -MethodName 'Update' -Arguments @{ FilePath = $binary } | Out-Null
  }
  exit 0
} catch {
  Write-Error $_
  exit 1
}
