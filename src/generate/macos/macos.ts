/**
 * macOS controls (templates/macos): a PPPC configuration profile for the agent's bundle
 * id, a TCC drift check script, a pf anchor, and the Jamf bundle. Pure: values reach the
 * plist through xmlText and bash through shQuote.
 */
import { stableUuid } from '../../hash.js';
import { isWithin } from '../../model/paths.js';
import type { Model } from '../../model/types.js';
import { effectiveFs } from '../../model/grants.js';
import { shQuote } from '../../escape/shell.js';
import { xmlComment, xmlText } from '../../escape/xml.js';
import { header } from '../header.js';
import { render, template, type Templates } from '../template.js';

/** TCC services for the protected folders a grant covers. */
const FOLDERS: [string, string][] = [
  ['Documents', 'SystemPolicyDocumentsFolder'],
  ['Desktop', 'SystemPolicyDesktopFolder'],
  ['Downloads', 'SystemPolicyDownloadsFolder'],
];
/** Services denied unless granted (the grammar has no grant for them, so always denied). */
export const DENIED_SERVICES = ['ScreenCapture', 'Accessibility', 'SystemPolicyAllFiles'];

export function tccServices(model: Model): string[] {
  const { fs } = effectiveFs(model);
  return FOLDERS.filter(([dir]) => fs.some((g) => isWithin(`${model.home}/${dir}`, g.path) || isWithin(g.path, `${model.home}/${dir}`))).map(([, s]) => s);
}

const bundleId = (model: Model) => model.agent.macos.bundleId ?? `com.agentbox.${model.name}`;

const uuid = (model: Model, purpose: string) => stableUuid(model.name, model.origin.sha256, purpose);

/** One service of the PPPC payload, from templates/macos/pppc-service.xml. */
function serviceEntry(t: Templates, service: string, id: string, authorization: 'Allow' | 'Deny'): string[] {
  return render('pppc-service.xml', template(t, 'macos/pppc-service.xml'), {
    service,
    authorization,
    codeRequirement: xmlText(`identifier "${id}"`),
    identifier: xmlText(id),
  })
    .trimEnd()
    .split('\n')
    .map((l) => `        ${l}`);
}

export function pppcProfile(model: Model, t: Templates): string {
  const id = bundleId(model);
  const allowed = tccServices(model);
  return render('pppc.mobileconfig', template(t, 'macos/pppc.mobileconfig'), {
    header: ['<!--', ...header(model, '  ').map(xmlComment), '-->'],
    nameXml: xmlText(model.name),
    bundleIdXml: xmlText(id),
    profileIdentifier: xmlText(`com.agentbox.${model.name}`),
    profileUuid: uuid(model, 'profile'),
    payloadIdentifier: xmlText(`com.agentbox.${model.name}.tcc`),
    payloadUuid: uuid(model, 'tcc'),
    services: [...allowed.flatMap((s) => serviceEntry(t, s, id, 'Allow')), ...DENIED_SERVICES.flatMap((s) => serviceEntry(t, s, id, 'Deny'))],
  });
}

export function tccCheckScript(model: Model, t: Templates): string {
  return render('tcc-check.sh', template(t, 'macos/tcc-check.sh'), {
    header: header(model, '#'),
    nameShell: model.name,
    bundleShell: bundleId(model),
    bundleId: shQuote(bundleId(model)),
    // TCC.db names services with a kTCCService prefix; PPPC profiles omit it.
    allowed: tccServices(model).map((s) => shQuote(`kTCCService${s}`)).join(' '),
  });
}

export function pfAnchor(model: Model, t: Templates): string {
  const rules: string[] = [];
  for (const g of model.grants.net) {
    if (g.hostKind === 'wildcard') {
      rules.push(`# ${g.source.pointer}: wildcard hosts cannot be expressed in pf; blocked`);
      continue;
    }
    rules.push(`pass out quick proto tcp from any to ${g.host} port ${g.port} user ${model.agent.user} keep state`);
  }
  return render('pf.anchor', template(t, 'macos/pf.anchor'), { header: header(model, '#'), account: model.agent.user, name: model.name, rules });
}

export function jamfPostinstall(model: Model, t: Templates): string {
  return render('jamf-postinstall.sh', template(t, 'macos/jamf-postinstall.sh'), {
    header: header(model, '#'),
    nameShell: model.name,
    anchorName: shQuote(`com.agentbox/${model.name}`),
    anchorFile: shQuote(`/etc/pf.anchors/com.agentbox.${model.name}`),
    tccCheck: `agentbox-${model.name}-tcc-check.sh`,
  });
}
