/**
 * A manifest's `egress` section: consent hosts, DLP detectors and the upload limits,
 * each value checked where it is written. Pure.
 */
import { parseGrant, parseSize, parseTtl } from '../model/grammar.js';
import {
  DEFAULT_CONSENT_MAX_QUESTIONS,
  DEFAULT_CONSENT_TIMEOUT_SECONDS,
  DEFAULT_PROXY_PORT,
  DEFAULT_UPLOAD_WINDOW_SECONDS,
  type ConsentHost,
  type CredentialSpec,
  type EgressRulesModel,
  type HttpHostRules,
  type HttpRule,
  type SecretSource,
  type Preset,
  type RuleSource,
} from '../model/types.js';
import type { RawDlp, RawManifest } from './schema.js';
import { DETECTOR_CHOICES, DETECTOR_GROUPS, expandDetectors } from '../model/dlp.js';
import { RE2 } from 're2-wasm';
import { parseHttpRule } from '../model/http.js';
import { hostMatches } from '../model/decide.js';
import { CA_ENV, PROXY_ENV } from '../model/environment.js';
import type { HostKind } from '../model/grammar.js';

/** Where `secret: NAME` is read from (root-only files, 0600). */
export const SECRETS_DIR = '/etc/agentbox/secrets';

export type ErrFn = (segments: (string | number)[], pointer: string, message: string) => void;

/** `egress`: consent hosts, DLP detectors, the upload threshold; each value checked where it is written. */
export function egressRules(raw: RawManifest, file: string, presets: Preset[], err: ErrFn): EgressRulesModel {
  const e = raw.egress ?? {};
  let consent: EgressRulesModel['consent'];
  if (e.consent !== undefined) {
    const hosts: ConsentHost[] = [];
    const entries = e.consent === 'ask' ? ['*'] : e.consent.ask;
    entries.forEach((entry, i) => {
      const pointer = e.consent === 'ask' ? 'egress.consent' : `egress.consent.ask[${i}]`;
      const segments = e.consent === 'ask' ? ['egress', 'consent'] : ['egress', 'consent', 'ask', i];
      const source: RuleSource = { origin: 'manifest', file, pointer, text: e.consent === 'ask' ? 'consent: ask' : entry };
      if (entry === '*') {
        hosts.push({ host: '*', hostKind: 'any', port: 'any', source });
        return;
      }
      const g = parseGrant(`net:connect:${entry}`);
      if (!g.ok || g.value.type !== 'net') err(segments, pointer, `${g.ok ? '' : g.message.replace('net:connect:', '')}; write HOST:PORT such as assets.example.com:443 or *.example.com:443, or * for any host`);
      else hosts.push({ host: g.value.host, hostKind: g.value.hostKind, port: g.value.port, source });
    });
    let timeoutSeconds = DEFAULT_CONSENT_TIMEOUT_SECONDS;
    if (e.consent !== 'ask' && e.consent.timeout !== undefined) {
      const t = parseTtl(e.consent.timeout);
      if (!t.ok) err(['egress', 'consent', 'timeout'], 'egress.consent.timeout', t.message.replace('ttl', 'timeout'));
      else if (t.value > 3600) err(['egress', 'consent', 'timeout'], 'egress.consent.timeout', `${e.consent.timeout} is over the 1h maximum; a held connection should not wait longer`);
      else timeoutSeconds = t.value;
    }
    if (presets.length > 0 && !presets.some((p) => p.ceiling.net)) {
      const names = presets.map((p) => p.name).join(', ');
      err(['egress', 'consent'], 'egress.consent', `asking for consent widens network access, which preset${presets.length > 1 ? 's' : ''} ${names} do${presets.length > 1 ? '' : 'es'} not allow; remove egress.consent or extend organizer`);
    }
    consent = { hosts, timeoutSeconds, maxQuestions: e.consent !== 'ask' && e.consent.maxQuestions !== undefined ? e.consent.maxQuestions : DEFAULT_CONSENT_MAX_QUESTIONS };
  }

  let dlp: EgressRulesModel['dlp'];
  if (e.dlp === undefined) dlp = presetDlp(presets);
  else if (e.dlp === true) err(['egress', 'dlp'], 'egress.dlp', 'write false (no DLP) or { detectors: [recommended] }; true alone names no detector');
  else if (e.dlp !== false) dlp = dlpRules(e.dlp, ['egress', 'dlp'], err, file);

  let maxUploadBytes: number | undefined;
  if (e.maxUploadBytes !== undefined) {
    const s = typeof e.maxUploadBytes === 'number' ? { ok: true as const, value: e.maxUploadBytes } : parseSize(e.maxUploadBytes);
    if (s.ok) maxUploadBytes = s.value;
    else err(['egress', 'maxUploadBytes'], 'egress.maxUploadBytes', s.message);
  }
  let maxSessionUploadBytes: number | undefined = maxUploadBytes !== undefined ? maxUploadBytes * 4 : undefined;
  if (e.maxSessionUploadBytes !== undefined) {
    const s = typeof e.maxSessionUploadBytes === 'number' ? { ok: true as const, value: e.maxSessionUploadBytes } : parseSize(e.maxSessionUploadBytes);
    if (!s.ok) err(['egress', 'maxSessionUploadBytes'], 'egress.maxSessionUploadBytes', s.message);
    else if (maxUploadBytes === undefined) err(['egress', 'maxSessionUploadBytes'], 'egress.maxSessionUploadBytes', 'needs egress.maxUploadBytes (the limit per destination)');
    else maxSessionUploadBytes = s.value;
  }
  let uploadWindowSeconds = DEFAULT_UPLOAD_WINDOW_SECONDS;
  if (e.uploadWindow !== undefined) {
    const t = parseTtl(e.uploadWindow);
    if (t.ok) uploadWindowSeconds = t.value;
    else err(['egress', 'uploadWindow'], 'egress.uploadWindow', t.message.replace('ttl', 'uploadWindow'));
  }
  if (e.uploadWindow !== undefined && maxUploadBytes === undefined) err(['egress', 'uploadWindow'], 'egress.uploadWindow', 'has no effect without egress.maxUploadBytes');
  if (e.onViolation !== undefined && dlp === undefined && maxUploadBytes === undefined) {
    err(['egress', 'onViolation'], 'egress.onViolation', 'has nothing to act on: add egress.dlp detectors or egress.maxUploadBytes');
  }
  const http = httpRules(e.http ?? [], file, err);
  const credentials = credentialSpecs(e.credentials ?? [], file, http, err, Object.keys(raw.agent?.env ?? {}));
  return { proxyPort: e.proxyPort ?? DEFAULT_PROXY_PORT, consent, dlp, maxUploadBytes, maxSessionUploadBytes, uploadWindowSeconds, onViolation: e.onViolation ?? 'block', http, credentials, trust: [...(e.trust ?? [])] };
}

/** A host as the http and credential entries write it: a name or `*.name` (no port). */
function hostOf(text: string, segments: (string | number)[], pointer: string, err: ErrFn, wildcard: boolean): { host: string; hostKind: HostKind } | undefined {
  const g = parseGrant(`net:connect:${text}:443`);
  if (!g.ok || g.value.type !== 'net') {
    err(segments, pointer, `"${text}" is not a host name; write it as in grants, such as api.github.com${wildcard ? ' or *.github.com' : ''} (no port)`);
    return undefined;
  }
  if (!wildcard && g.value.hostKind === 'wildcard') {
    err(segments, pointer, `"${text}" is a wildcard; a secret is sent to one named host only`);
    return undefined;
  }
  return { host: g.value.host, hostKind: g.value.hostKind };
}

type RawHttp = NonNullable<NonNullable<RawManifest['egress']>['http']>;
type RawCredentials = NonNullable<NonNullable<RawManifest['egress']>['credentials']>;

/** `egress.http`: each rule parsed where it is written. */
function httpRules(raw: RawHttp, file: string, err: ErrFn): HttpHostRules[] {
  const out: HttpHostRules[] = [];
  raw.forEach((entry, i) => {
    const pointer = `egress.http[${i}]`;
    const h = hostOf(entry.host, ['egress', 'http', i, 'host'], `${pointer}.host`, err, true);
    const rules = (list: string[] | undefined, key: 'allow' | 'deny'): HttpRule[] =>
      (list ?? []).flatMap((text, j) => {
        const r = parseHttpRule(text);
        if (!r.ok) {
          err(['egress', 'http', i, key, j], `${pointer}.${key}[${j}]`, r.message);
          return [];
        }
        return [{ method: r.method, segments: r.segments, text, source: { origin: 'manifest' as const, file, pointer: `${pointer}.${key}[${j}]`, text } }];
      });
    const allow = entry.allow === undefined ? undefined : rules(entry.allow, 'allow');
    const deny = rules(entry.deny, 'deny');
    if (entry.inspect === false && (entry.allow !== undefined || entry.deny !== undefined)) {
      err(['egress', 'http', i, 'inspect'], `${pointer}.inspect`, 'rules need the traffic decrypted; remove inspect: false or the allow/deny rules');
    }
    if (entry.inspect === undefined && entry.allow === undefined && entry.deny === undefined) {
      err(['egress', 'http', i], pointer, 'says nothing about the host; give allow or deny rules, or inspect: true / false');
    }
    if (h) out.push({ ...h, inspect: entry.inspect, allow, deny, source: { origin: 'manifest', file, pointer, text: entry.host } });
  });
  return out;
}

/** `egress.credentials`: where each secret comes from and how it is sent; the value is never read here. */
function credentialSpecs(raw: RawCredentials, file: string, http: readonly HttpHostRules[], err: ErrFn, agentEnv: readonly string[]): CredentialSpec[] {
  const out: CredentialSpec[] = [];
  raw.forEach((c, i) => {
    const pointer = `egress.credentials[${i}]`;
    const h = hostOf(c.host, ['egress', 'credentials', i, 'host'], `${pointer}.host`, err, false);
    const ways = [c.header !== undefined, c.query !== undefined, c.bearer === true].filter(Boolean).length;
    if (ways !== 1) err(['egress', 'credentials', i], pointer, 'give exactly one of header (e.g. x-api-key), query (e.g. key) or bearer: true');
    const inject: CredentialSpec['inject'] = c.header !== undefined ? { kind: 'header', name: c.header.toLowerCase() } : c.query !== undefined ? { kind: 'query', name: c.query } : { kind: 'bearer' };
    if (inject.kind === 'header' && ['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'te', 'trailer', 'proxy-authorization', 'cookie'].includes(inject.name)) {
      err(['egress', 'credentials', i, 'header'], `${pointer}.header`, `${inject.name} is not a credential header; name the header the API reads the key from (x-api-key, authorization)`);
    }
    const s = c.secret;
    const secret: SecretSource = typeof s === 'string' ? { kind: 'file', path: `${SECRETS_DIR}/${s}` } : 'file' in s ? { kind: 'file', path: s.file } : 'helper' in s ? { kind: 'helper', argv: [...s.helper] } : { kind: 'env', name: s.env };
    const name = c.name ?? (typeof s === 'string' ? s : undefined);
    if (name === undefined) err(['egress', 'credentials', i, 'name'], `${pointer}.name`, 'a secret given as file, helper or env needs a name (it names the credential in the audit log and the placeholder)');
    if (name !== undefined && raw.findIndex((d) => (d.name ?? (typeof d.secret === 'string' ? d.secret : undefined)) === name) !== i) err(['egress', 'credentials', i, 'name'], `${pointer}.name`, `credential name "${name}" is used twice`);
    if (c.env !== undefined && (PROXY_ENV.includes(c.env) || CA_ENV.includes(c.env) || ['HOME', 'PATH'].includes(c.env))) err(['egress', 'credentials', i, 'env'], `${pointer}.env`, `${c.env} is set by agentbox itself; name the variable the agent reads its key from`);
    if (c.env !== undefined && agentEnv.includes(c.env)) err(['egress', 'credentials', i, 'env'], `${pointer}.env`, `agent.env also sets ${c.env}; remove it there (the box gets the placeholder, and the proxy the real key)`);
    if (c.env !== undefined && raw.findIndex((d) => d.env === c.env) !== i) err(['egress', 'credentials', i, 'env'], `${pointer}.env`, `${c.env} already holds another credential's placeholder`);
    if (h && http.some((e) => e.inspect === false && hostMatches(e.host, h.host))) err(['egress', 'credentials', i, 'host'], `${pointer}.host`, `${h.host} is marked inspect: false in egress.http, but injecting a credential needs the traffic decrypted`);
    if (h && name !== undefined) out.push({ name, host: h.host, inject, env: c.env, secret, source: { origin: 'manifest', file, pointer, text: `${name} for ${h.host}` } });
  });
  return out;
}


/**
 * `egress.dlp` (an agent's, or a preset's default): detectors and groups expanded,
 * custom regexes compiled by RE2 (linear time whatever the input, so a manifest's
 * pattern cannot stall the proxy; lookaround and backreferences are refused here).
 */
export function dlpRules(d: RawDlp, at: (string | number)[], err: ErrFn, from: string): NonNullable<EgressRulesModel['dlp']> {
  const base = at.join('.');
  const custom = (d.custom ?? []).map((c, i) => {
    const pointer = `${base}.custom[${i}]`;
    if ((c.regex === undefined) === (c.marker === undefined)) err([...at, 'custom', i], pointer, 'give exactly one of regex (a regular expression) or marker (literal text such as CONFIDENTIAL)');
    if (c.regex !== undefined) {
      try {
        const re = new RE2(c.regex, c.ignoreCase ? 'iu' : 'u');
        if (re.test('')) err([...at, 'custom', i, 'regex'], `${pointer}.regex`, `/${c.regex}/ matches empty text, so it would block every request; make it match the data itself`);
      } catch (x) {
        const why = (x as Error).message.replace(/^Invalid regular expression: \/.*\/u?i?: /s, '');
        err([...at, 'custom', i, 'regex'], `${pointer}.regex`, `not a regular expression RE2 accepts (${why}); RE2 syntax runs in linear time, so lookaround (?=…) (?<=…) and backreferences \\1 are not available`);
      }
    }
    if (c.marker !== undefined && /[\p{Cc}]/u.test(c.marker)) err([...at, 'custom', i, 'marker'], `${pointer}.marker`, 'a marker is printable text such as CONFIDENTIAL');
    if ((d.custom ?? []).findIndex((x) => x.name === c.name) !== i) err([...at, 'custom', i, 'name'], `${pointer}.name`, `detector name "${c.name}" is used twice; audit events name detectors, so names must be unique`);
    return { name: c.name, ...(c.regex !== undefined ? { regex: c.regex } : { marker: c.marker ?? '' }), ignoreCase: c.ignoreCase ?? false };
  });
  const written = [...(d.detectors ?? [])];
  written.forEach((n, i) => {
    if (!DETECTOR_CHOICES.includes(n)) err([...at, 'detectors', i], `${base}.detectors[${i}]`, `unknown detector "${n}"; groups: ${Object.keys(DETECTOR_GROUPS).join(', ')}; detectors: ${DETECTOR_CHOICES.filter((x) => !(x in DETECTOR_GROUPS)).join(', ')}`);
  });
  if (written.length === 0 && custom.length === 0) err(at, base, `names no detector; list detectors or groups (${Object.keys(DETECTOR_GROUPS).join(', ')}) or custom ones, or write dlp: false to have none`);
  return { detectors: expandDetectors(written), written, custom, from };
}

/** The DLP the presets bring when the agent says nothing: every preset's detectors together. */
function presetDlp(presets: readonly Preset[]): EgressRulesModel['dlp'] {
  const withDlp = presets.filter((p) => p.dlp !== undefined);
  if (withDlp.length === 0) return undefined;
  const written = [...new Set(withDlp.flatMap((p) => p.dlp!.written))];
  const custom = withDlp.flatMap((p) => p.dlp!.custom).filter((c, i, all) => all.findIndex((x) => x.name === c.name) === i);
  return { detectors: expandDetectors(written), written, custom, from: `preset ${withDlp.map((p) => p.name).join(', ')}` };
}
