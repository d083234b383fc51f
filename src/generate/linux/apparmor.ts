/**
 * The AppArmor profile (templates/linux/agent.apparmor). Pure.
 */
import type { Model } from '../../model/types.js';
import { effectiveFs } from '../../model/grants.js';
import { apparmorPath, apparmorPathGlob } from '../../escape/apparmor.js';
import { header } from '../header.js';
import { render, template, type Templates } from '../template.js';

export function apparmorProfile(model: Model, templates: Templates): string {
  const { fs } = effectiveFs(model);
  const execRules: string[] = [];
  for (const p of [model.agent.command[0]!, ...model.grants.exec.map((g) => g.path)]) {
    execRules.push(`${apparmorPath(p)} mrix,`, `${apparmorPathGlob(p, '/**')} mrix,`);
  }
  const fsRules: string[] = [];
  for (const g of fs) {
    const perms = g.access === 'write' ? 'rwk' : 'r';
    fsRules.push(`${apparmorPath(g.path)} ${perms},`, `${apparmorPathGlob(g.path, '/')} r,`, `${apparmorPathGlob(g.path, '/**')} ${perms},`);
  }
  if (fsRules.length === 0) fsRules.push('# none: this agent is granted no files');
  const denyRules: string[] = [];
  for (const d of model.denies.fs) {
    const perms = d.access === 'all' ? 'rwlkmx' : 'wl';
    denyRules.push(`deny ${apparmorPath(d.path)} ${perms},`, `deny ${apparmorPathGlob(d.path, '/')} ${perms},`, `deny ${apparmorPathGlob(d.path, '/**')} ${perms},`);
  }
  for (const d of model.denies.exec) denyRules.push(`deny ${apparmorPath(d.path)} x,`, `deny ${apparmorPathGlob(d.path, '/**')} x,`);
  const networkRules =
    model.grants.net.length > 0
      ? ['network inet stream,', 'network inet6 stream,', 'deny network inet dgram,', 'deny network inet6 dgram,']
      : ['deny network inet,', 'deny network inet6,'];
  return render('agent.apparmor', template(templates, 'linux/agent.apparmor'), {
    header: header(model, '#'),
    name: model.name,
    execRules,
    fsRules,
    denyRules,
    networkRules,
  });
}
