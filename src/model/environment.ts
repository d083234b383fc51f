/**
 * The agent's environment, the same in every box and in the generated systemd unit:
 * HOME, PATH and LANG, the manifest's variables, and the proxy variables agentbox owns.
 * Pure.
 */
import type { Model } from './types.js';

/** Environment variables agentbox sets itself and a manifest may not override. */
export const PROXY_ENV = ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy', 'NO_PROXY', 'no_proxy'];

export function agentEnvironment(model: Model, proxyUrl: string | undefined): [string, string][] {
  const env: [string, string][] = [
    ['HOME', model.home],
    ['PATH', '/usr/local/bin:/usr/bin:/bin'],
    ['LANG', 'C.UTF-8'],
  ];
  for (const [k, v] of Object.entries(model.agent.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (PROXY_ENV.includes(k)) continue;
    const i = env.findIndex(([n]) => n === k);
    if (i >= 0) env[i] = [k, v];
    else env.push([k, v]);
  }
  if (proxyUrl) {
    for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy']) env.push([k, proxyUrl]);
    env.push(['NO_PROXY', ''], ['no_proxy', '']);
  }
  return env;
}
