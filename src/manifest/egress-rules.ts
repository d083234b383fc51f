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
  type EgressRulesModel,
  type Preset,
  type RuleSource,
} from '../model/types.js';
import type { RawManifest } from './schema.js';

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
  if (e.dlp !== undefined) {
    const custom = (e.dlp.custom ?? []).map((c, i) => {
      const pointer = `egress.dlp.custom[${i}]`;
      if ((c.regex === undefined) === (c.marker === undefined)) err(['egress', 'dlp', 'custom', i], pointer, 'give exactly one of regex (a regular expression) or marker (literal text such as CONFIDENTIAL)');
      if (c.regex !== undefined) {
        try {
          const re = new RegExp(c.regex, c.ignoreCase ? 'ui' : 'u');
          if (re.test('')) err(['egress', 'dlp', 'custom', i, 'regex'], `${pointer}.regex`, `/${c.regex}/ matches empty text, so it would block every request; make it match the data itself`);
        } catch (x) {
          err(['egress', 'dlp', 'custom', i, 'regex'], `${pointer}.regex`, `not a valid regular expression (${(x as Error).message}); JavaScript syntax with the u flag`);
        }
      }
      if (c.marker !== undefined && /[\p{Cc}]/u.test(c.marker)) err(['egress', 'dlp', 'custom', i, 'marker'], `${pointer}.marker`, 'a marker is printable text such as CONFIDENTIAL');
      if ((e.dlp!.custom ?? []).findIndex((d) => d.name === c.name) !== i) err(['egress', 'dlp', 'custom', i, 'name'], `${pointer}.name`, `detector name "${c.name}" is used twice; audit events name detectors, so names must be unique`);
      return { name: c.name, ...(c.regex !== undefined ? { regex: c.regex } : { marker: c.marker ?? '' }), ignoreCase: c.ignoreCase ?? false };
    });
    const detectors = e.dlp.detectors ?? [];
    if (detectors.length === 0 && custom.length === 0) err(['egress', 'dlp'], 'egress.dlp', 'names no detector; list detectors (private-key, aws-access-key, us-ssn, payment-card) or custom ones');
    dlp = { detectors, custom };
  }

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
  return { proxyPort: e.proxyPort ?? DEFAULT_PROXY_PORT, consent, dlp, maxUploadBytes, maxSessionUploadBytes, uploadWindowSeconds, onViolation: e.onViolation ?? 'block' };
}

