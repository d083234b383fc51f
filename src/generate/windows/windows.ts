/**
 * Windows controls (templates/windows): Defender Firewall rules for the agent program,
 * an App Control for Business (WDAC) policy with its deploy script, NTFS grants for the
 * agent account, a rollback, and the Intune bundle. Pure: every manifest value reaches
 * PowerShell through psString and XML through xmlText; all logic is in the templates.
 */
import { stableUuid } from '../../hash.js';
import { isWithin } from '../../model/paths.js';
import type { Model } from '../../model/types.js';
import { effectiveFs } from '../../model/grants.js';
import { psArray, psString } from '../../escape/powershell.js';
import { xmlComment, xmlText } from '../../escape/xml.js';
import { header } from '../header.js';
import { render, template, type Templates } from '../template.js';

/** The policy GUID: derived from the manifest, so regeneration keeps the same policy id. */
export function stableGuid(model: Model, purpose: string): string {
  return stableUuid(model.name, model.origin.sha256, purpose);
}

export const windowsGroup = (model: Model) => `agentbox-${model.name}`;
const program = (model: Model) => model.agent.windows.program ?? `%ProgramFiles%\\agentbox\\${model.name}\\${model.name}.exe`;

/** Granted paths under the manifest's home, as paths relative to %USERPROFILE%. */
function homeRelative(model: Model): { relative: string; write: boolean }[] {
  return effectiveFs(model)
    .fs.filter((g) => isWithin(g.path, model.home) && g.path !== model.home)
    .map((g) => ({ relative: g.path.slice(model.home.length + 1).replace(/\//g, '\\'), write: g.access === 'write' }));
}

export function firewallPs1(model: Model, t: Templates): string {
  const direct = model.grants.net.filter((g) => g.hostKind === 'name' || g.hostKind === 'ipv4');
  return render('firewall.ps1', template(t, 'windows/firewall.ps1'), {
    header: header(model, '#'),
    name: model.name,
    group: psString(windowsGroup(model)),
    program: psString(program(model)),
    grants: direct.map((g) => `  @{ Host = ${psString(g.host)}; Port = ${g.port} }`),
    unresolvable: psArray(model.grants.net.filter((g) => g.hostKind === 'wildcard' || g.hostKind === 'ipv6').map((g) => `${g.host}:${g.port}`)),
  });
}

export function aclPs1(model: Model, t: Templates): string {
  const grants = homeRelative(model);
  return render('acl.ps1', template(t, 'windows/acl.ps1'), {
    header: header(model, '#'),
    account: psString(model.agent.user),
    grants: grants.map((g) => `  @{ Relative = ${psString(g.relative)}; Write = $${g.write ? 'true' : 'false'} }`),
    skipped: psArray(effectiveFs(model).fs.filter((g) => !isWithin(g.path, model.home) || g.path === model.home).map((g) => g.path)),
  });
}

export function wdacXml(model: Model, t: Templates): string {
  const id = stableGuid(model, 'wdac');
  const files: string[] = [];
  const refs: string[] = [];
  if (model.agent.windows.program) {
    files.push(`    <Allow ID="ID_ALLOW_AGENT" FriendlyName="${xmlText(`agent ${model.name}`)}" FilePath="${xmlText(model.agent.windows.program)}" />`);
    refs.push('          <FileRuleRef RuleID="ID_ALLOW_AGENT" />');
  }
  const comment = header(model, '  ').map(xmlComment);
  return render('wdac.xml', template(t, 'windows/wdac.xml'), {
    header: ['<!--', ...comment, '-->'],
    policyId: id,
    fileRules: files,
    fileRuleRefs: refs,
    name: xmlText(model.name),
  });
}

export function wdacPs1(model: Model, t: Templates): string {
  return render('wdac.ps1', template(t, 'windows/wdac.ps1'), {
    header: header(model, '#'),
    policyId: psString(stableGuid(model, 'wdac')),
    xmlFile: psString(`agentbox-${model.name}-wdac.xml`),
  });
}

export function rollbackPs1(model: Model, t: Templates): string {
  return render('rollback.ps1', template(t, 'windows/rollback.ps1'), {
    header: header(model, '#'),
    name: model.name,
    group: psString(windowsGroup(model)),
    policyId: psString(stableGuid(model, 'wdac')),
    account: psString(model.agent.user),
    relative: psArray(homeRelative(model).map((g) => g.relative)),
  });
}

export function intuneInstallPs1(model: Model, t: Templates): string {
  return render('intune-install.ps1', template(t, 'windows/intune-install.ps1'), {
    header: header(model, '#'),
    name: model.name,
    steps: psArray([`agentbox-${model.name}-firewall.ps1`, `agentbox-${model.name}-acl.ps1`, `agentbox-${model.name}-wdac.ps1`]),
  });
}

export function intuneDetectPs1(model: Model, t: Templates): string {
  return render('intune-detect.ps1', template(t, 'windows/intune-detect.ps1'), { header: header(model, '#'), name: model.name, group: psString(windowsGroup(model)) });
}
