/**
 * The agent's environment, the same in every box and in the generated systemd unit:
 * HOME, PATH and LANG, the manifest's variables, and the proxy variables agentbox owns.
 * Pure.
 */
import type { Model } from './types.js';

/** Environment variables agentbox sets itself and a manifest may not override. */
export const PROXY_ENV = ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy', 'NO_PROXY', 'no_proxy'];

/** Variables that point every common runtime at the CA bundle (the system's roots and the session CA). */
export const CA_ENV = ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO', 'PIP_CERT', 'DENO_CERT', 'CARGO_HTTP_CAINFO'];

/** Where the box sees the CA bundle: the system bundle's own path (bound over it, or created). */
export const BOX_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/**
 * The agent's environment. `extra.caBundle`: the box trusts the session CA (it has a
 * decrypted host), so every CA variable names the bundle. `extra.placeholders`: the
 * credential variables, each holding its placeholder (never the secret).
 */
export function agentEnvironment(model: Model, proxyUrl: string | undefined, extra: { caBundle?: string; placeholders?: Record<string, string> } = {}): [string, string][] {
  const env: [string, string][] = [
    ['HOME', model.home],
    ['PATH', '/usr/local/bin:/usr/bin:/bin'],
    ['LANG', 'C.UTF-8'],
  ];
  for (const [k, v] of Object.entries(model.agent.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (PROXY_ENV.includes(k) || (extra.caBundle !== undefined && CA_ENV.includes(k)) || extra.placeholders?.[k] !== undefined) continue;
    const i = env.findIndex(([n]) => n === k);
    if (i >= 0) env[i] = [k, v];
    else env.push([k, v]);
  }
  if (proxyUrl) {
    for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy']) env.push([k, proxyUrl]);
    env.push(['NO_PROXY', ''], ['no_proxy', '']);
  }
  if (extra.caBundle !== undefined) for (const k of CA_ENV) env.push([k, extra.caBundle]);
  for (const [k, v] of Object.entries(extra.placeholders ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) env.push([k, v]);
  return env;
}
