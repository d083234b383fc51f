{{header}}
# Windows Defender Firewall rules for agent {{name}}: the program may connect only to
# the granted hosts and ports. Block rules win over allow rules in Windows Firewall, so
# the program is blocked from the complement of the allowed addresses, from other ports
# and UDP on the allowed ones, and from IPv6 entirely. Host names are resolved when this
# script runs (A records): run it again (it is idempotent) when they change. Wildcard
# grants cannot be resolved and stay blocked. Exit 0 on success, 1 on failure.
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$Group = {{group}}
$Program = [Environment]::ExpandEnvironmentVariables({{program}})
$Grants = @(
{{grants}}
)
$Unresolvable = {{unresolvable}}

function ConvertTo-Number([string]$Address) {
  $b = ([System.Net.IPAddress]::Parse($Address)).GetAddressBytes()
  return ([uint64]$b[0] -shl 24) + ([uint64]$b[1] -shl 16) + ([uint64]$b[2] -shl 8) + [uint64]$b[3]
}

function ConvertTo-Address([uint64]$Value) {
  return '{0}.{1}.{2}.{3}' -f (($Value -shr 24) -band 255), (($Value -shr 16) -band 255), (($Value -shr 8) -band 255), ($Value -band 255)
}

function Get-Complement([uint64[]]$Values, [uint64]$Max, [scriptblock]$Format) {
  $ranges = New-Object System.Collections.Generic.List[string]
  $next = [uint64]0
  foreach ($v in ($Values | Sort-Object -Unique)) {
    if ($v -gt $next) { $ranges.Add(('{0}-{1}' -f (& $Format $next), (& $Format ($v - 1)))) }
    $next = $v + 1
  }
  if ($next -le $Max) { $ranges.Add(('{0}-{1}' -f (& $Format $next), (& $Format $Max))) }
  return $ranges.ToArray()
}

try {
  Get-NetFirewallRule -Group $Group -ErrorAction SilentlyContinue | Remove-NetFirewallRule
  foreach ($u in $Unresolvable) { Write-Warning ('{0}: wildcard grants cannot be enforced by Windows Firewall; it stays blocked' -f $u) }
  $allowed = @{}
  foreach ($g in $Grants) {
    if ($g.Host -match '^\d{1,3}(\.\d{1,3}){3}$') { $addresses = @($g.Host) }
    else { $addresses = @(Resolve-DnsName -Name $g.Host -Type A -DnsOnly | Where-Object { $_.Type -eq 'A' } | ForEach-Object { $_.IPAddress }) }
    foreach ($a in $addresses) {
      if (-not $allowed.ContainsKey($a)) { $allowed[$a] = New-Object System.Collections.Generic.List[uint64] }
      $allowed[$a].Add([uint64]$g.Port)
      New-NetFirewallRule -Group $Group -DisplayName ('agentbox {0}: allow {1}:{2}' -f $Group, $g.Host, $g.Port) -Direction Outbound -Program $Program -Protocol TCP -RemoteAddress $a -RemotePort $g.Port -Action Allow | Out-Null
    }
  }
  $numbers = @($allowed.Keys | ForEach-Object { ConvertTo-Number $_ })
  $others = Get-Complement -Values $numbers -Max 4294967295 -Format { param($n) ConvertTo-Address $n }
  if ($others.Count -gt 0) {
    New-NetFirewallRule -Group $Group -DisplayName ('agentbox {0}: block other addresses' -f $Group) -Direction Outbound -Program $Program -RemoteAddress $others -Action Block | Out-Null
  }
  foreach ($a in $allowed.Keys) {
    $ports = Get-Complement -Values $allowed[$a].ToArray() -Max 65535 -Format { param($n) $n }
    New-NetFirewallRule -Group $Group -DisplayName ('agentbox {0}: block other ports of {1}' -f $Group, $a) -Direction Outbound -Program $Program -Protocol TCP -RemoteAddress $a -RemotePort $ports -Action Block | Out-Null
    New-NetFirewallRule -Group $Group -DisplayName ('agentbox {0}: block UDP to {1}' -f $Group, $a) -Direction Outbound -Program $Program -Protocol UDP -RemoteAddress $a -Action Block | Out-Null
  }
  New-NetFirewallRule -Group $Group -DisplayName ('agentbox {0}: block IPv6' -f $Group) -Direction Outbound -Program $Program -RemoteAddress '::/0' -Action Block | Out-Null
  exit 0
} catch {
  Write-Error $_
  exit 1
}
