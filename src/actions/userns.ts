/**
 * `userns-profile`: the AppArmor profile that lets bubblewrap create user namespaces on
 * hosts that restrict them (Ubuntu 24.04's kernel.apparmor_restrict_unprivileged_userns).
 */
import { AgentboxError } from '../errors.js';
import { apparmorPath } from '../escape/apparmor.js';
import { render, template } from '../generate/template.js';
import { readTemplates } from '../host/files.js';
import { whichSync } from '../host/which.js';

export function usernsProfile(bwrapArg: string | undefined): string {
  const bwrap = bwrapArg ?? whichSync('bwrap');
  if (!bwrap) throw new AgentboxError('CONTROL_UNAVAILABLE', 'bubblewrap is not installed (apt-get install bubblewrap)');
  if (!bwrap.startsWith('/')) throw new AgentboxError('USAGE', `--bwrap ${bwrap}: give the absolute path of bwrap`);
  return render('bwrap-userns.apparmor', template(readTemplates(), 'linux/bwrap-userns.apparmor'), { bwrap, bwrapQuoted: apparmorPath(bwrap) }).trimEnd();
}
