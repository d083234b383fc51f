/**
 * Running the built CLI as a user would (node bin/agentbox.js), optionally inside a
 * network namespace. test/global-setup.ts builds dist/ once before any test.
 */
import { execa } from 'execa';
import { join } from 'node:path';
import { ROOT } from './load.js';

export const BIN = join(ROOT, 'bin', 'agentbox.js');

export async function agentbox(args: string[], opts: { netns?: string; env?: Record<string, string>; cwd?: string; input?: string } = {}) {
  const cmd = opts.netns ? 'ip' : process.execPath;
  const argv = opts.netns ? ['netns', 'exec', opts.netns, process.execPath, BIN, ...args] : [BIN, ...args];
  const r = await execa(cmd, argv, {
    reject: false,
    env: { NO_COLOR: '1', ...opts.env },
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
  });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
