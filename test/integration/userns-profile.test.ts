/**
 * Hosts that restrict unprivileged user namespaces (Ubuntu 24.04) need an AppArmor
 * profile granting `userns` to bubblewrap. Debian 12's apparmor_parser (3.0) predates
 * the `userns` rule and abi 4.0, so the real parser checks everything else in the
 * profile; the two AppArmor-4 lines are checked for their exact form.
 */
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { agentbox } from '../helpers/cli.js';
import { apparmorCheck } from '../helpers/real-parsers.js';

describe('agentbox userns-profile', () => {
  it('grants userns to bwrap alone, in the form AppArmor 4 expects, and otherwise parses', async () => {
    const r = await agentbox(['userns-profile', '--bwrap', "/opt/my bwrap's/bwrap"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^abi <abi\/4\.0>,$/m);
    expect(r.stdout).toMatch(/^profile agentbox-bwrap "\/opt\/my bwrap's\/bwrap" flags=\(unconfined\) \{$/m);
    expect(r.stdout).toMatch(/^  userns,$/m);
    const v3 = r.stdout.replace('abi <abi/4.0>,', 'abi <abi/3.0>,').replace(/^  userns,$/m, '');
    const f = join(mkdtempSync(join(tmpdir(), 'agentbox-userns-')), 'p');
    writeFileSync(f, v3);
    expect(await apparmorCheck(f)).toEqual({ ok: true, output: '' });
  });
  it('refuses a relative bwrap path', async () => {
    expect((await agentbox(['userns-profile', '--bwrap', 'bwrap'])).code).toBe(2);
  });
});
