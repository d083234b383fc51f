/**
 * `agentbox report`: one self-contained HTML file (pure: records and verification
 * reports in, bytes out). No script, no external resource, and a Content-Security-Policy
 * of `default-src 'none'` with inline styles only, so opening it offline can neither run
 * anything nor fetch anything, whatever the log holds. Every value from the log goes
 * through htmlText. Charts are inline SVG bars (a few lines each, checked by the
 * Chromium test), smaller than any charting library and with nothing to load.
 *
 * Order: the verification state of each log first, then the KPIs over the period, then
 * each session's timeline.
 */
import { htmlText } from '../escape/html.js';
import type { AuditRecord } from './record.js';
import { kpis, timelines, type EventKind, type Kpis } from './timeline.js';
import type { VerifyReport } from './verify.js';

export interface ReportLog {
  file: string;
  verify: VerifyReport;
  spooled: number;
}

export interface ReportInput {
  logs: ReportLog[];
  records: AuditRecord[];
  since: string | null;
  generatedAt: string;
  version: string;
}

const e = htmlText;

const KIND_LABEL: Record<EventKind, string> = {
  launch: 'launch', 'file-activity': 'files', 'fs-deny': 'denied (kernel)', threshold: 'threshold', 'egress-allow': 'allowed', 'egress-deny': 'denied', 'consent-ask': 'consent asked', 'consent-answer': 'consent answered', violation: 'violation', quarantine: 'quarantine', release: 'release', token: 'token', control: 'control', exit: 'exit', revert: 'revert', persist: 'persist', other: 'event',
};

function duration(ms: number | null): string {
  if (ms === null) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

/** A horizontal bar per row, scaled to the largest. */
function bars(rows: { label: string; value: number; cls: string }[], title: string): string {
  const max = Math.max(1, ...rows.map((r) => r.value));
  const h = 22;
  const body = rows
    .map((r, i) => {
      const w = Math.round((r.value / max) * 260);
      return `<text x="0" y="${i * h + 15}">${e(r.label)}</text><rect class="${r.cls}" x="150" y="${i * h + 4}" width="${w}" height="14"/><text x="${156 + w}" y="${i * h + 15}">${r.value}</text>`;
    })
    .join('');
  return `<svg role="img" aria-label="${e(title)}" width="460" height="${Math.max(1, rows.length) * h}" viewBox="0 0 460 ${Math.max(1, rows.length) * h}">${body}</svg>`;
}

function kpiCard(key: string, label: string, value: string, note = ''): string {
  return `<div class="kpi"><div class="v" data-kpi="${key}">${e(value)}</div><div class="l">${e(label)}</div>${note ? `<div class="n">${e(note)}</div>` : ''}</div>`;
}

function kpiSection(k: Kpis): string {
  const pct = (x: number | null) => (x === null ? '–' : `${Math.round(x * 100)}%`);
  return `<section id="kpis"><h2>Over the period</h2><div class="kpis">
${kpiCard('sessions', 'sessions', String(k.sessions))}
${kpiCard('allowed', 'egress allowed', String(k.allowed))}
${kpiCard('denied', 'egress denied', String(k.denied))}
${kpiCard('escalations', 'consent requests', String(k.escalations), `${k.approved} approved`)}
${kpiCard('time-to-approve', 'time to approve (median)', duration(k.timeToApproveMs.median), k.timeToApproveMs.max === null ? '' : `longest ${duration(k.timeToApproveMs.max)}`)}
${kpiCard('blocked-uploads', 'blocked uploads (DLP, upload limit)', String(k.blockedUploads))}
${kpiCard('rollback-rate', 'rollback rate', pct(k.rollbackRate), `${k.reverted} of ${k.ended} ended sessions reverted`)}
${kpiCard('kernel-denials', 'denied by the kernel (files, system calls)', String(k.kernelDenials))}
${kpiCard('threshold-hits', 'behaviour rules tripped', String(k.thresholdHits))}
${kpiCard('quarantines', 'quarantines', String(k.quarantines))}
${kpiCard('mttd', 'MTTD: violation to quarantine', duration(k.mttdMs))}
${kpiCard('mttr', 'MTTR: quarantine to release or end', duration(k.mttrMs))}
</div>
<div class="charts"><figure>${bars([{ label: 'allowed', value: k.allowed, cls: 'ok' }, { label: 'denied', value: k.denied, cls: 'no' }], 'egress allowed and denied')}<figcaption>egress decisions</figcaption></figure>
<figure>${bars(k.deniedBy.slice(0, 8).map((d) => ({ label: d.reason.slice(0, 22), value: d.count, cls: 'no' })), 'denials by reason')}<figcaption>denials by reason${k.deniedBy.length > 8 ? ` (8 of ${k.deniedBy.length})` : ''}</figcaption></figure></div></section>`;
}

function verifySection(logs: readonly ReportLog[]): string {
  const rows = logs
    .map((l) => {
      const v = l.verify;
      const state = v.firstBad ? 'bad' : v.tornLine !== null ? 'torn' : 'ok';
      const what = v.firstBad
        ? `entry at line ${v.firstBad.line}${v.firstBad.seq !== null ? ` (seq ${v.firstBad.seq})` : ''}: ${v.firstBad.problem}`
        : v.tornLine !== null
          ? `entries 1-${v.entries} intact; line ${v.tornLine} is torn`
          : `${v.entries} entries, chain intact, ${v.checkedSignatures} signatures checked`;
      return `<tr class="${state}" data-log-state="${state}"><td>${e(state.toUpperCase())}</td><td>${e(l.file)}</td><td>${e(what)}${l.spooled ? e(`; ${l.spooled} spooled writes wait for the lock`) : ''}</td></tr>`;
    })
    .join('\n');
  return `<section id="verification"><h2>Verification</h2><table><thead><tr><th>state</th><th>log</th><th>what agentbox audit verify says</th></tr></thead><tbody>
${rows}
</tbody></table></section>`;
}

function sessionSection(records: readonly AuditRecord[]): string {
  const ts = timelines(records);
  if (ts.length === 0) return '<section id="sessions"><h2>Sessions</h2><p>No session in the period.</p></section>';
  const one = ts
    .map((t) => {
      const items = t.events
        .map((ev) => `<tr class="k-${ev.kind}" data-kind="${ev.kind}"><td class="t">${e(ev.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))}</td><td><span class="b ${ev.decision}">${e(KIND_LABEL[ev.kind])}</span></td><td>${e(ev.text)}</td></tr>`)
        .join('\n');
      const status = t.quarantined ? 'quarantined' : t.end ? `ended${t.exitCode !== null ? `, exit ${t.exitCode}` : ''}` : 'running or not closed in this log';
      return `<article class="session" data-session="${e(t.session)}"><h3>${e(t.session)} <small>${e(t.agent)} · ${e(t.start)} · ${e(status)} · ${t.events.length} events</small></h3><table class="tl"><tbody>
${items}
</tbody></table></article>`;
    })
    .join('\n');
  return `<section id="sessions"><h2>Sessions (${ts.length})</h2>\n${one}\n</section>`;
}

const STYLE = `body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fff;max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde1e8;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
h3 small{font-weight:400;color:#5a6272}.meta{color:#5a6272}table{border-collapse:collapse;width:100%}td,th{padding:3px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #eef0f4}
tr.ok td:first-child{color:#1a7f37;font-weight:600}tr.bad td:first-child,tr.torn td:first-child{color:#b42318;font-weight:600}
.kpis{display:flex;flex-wrap:wrap;gap:10px}.kpi{border:1px solid #dde1e8;border-radius:6px;padding:8px 12px;min-width:150px}.kpi .v{font-size:22px;font-weight:600}.kpi .l{color:#3d4454}.kpi .n{color:#6b7385;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:24px;margin-top:12px}figure{margin:0}figcaption{color:#5a6272;font-size:12px}svg text{font-size:12px;fill:#1d2330}rect.ok{fill:#2f9e55}rect.no{fill:#d0453a}
td.t{white-space:nowrap;color:#5a6272;font-variant-numeric:tabular-nums;width:1%}.b{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;background:#eef0f4;white-space:nowrap}.b.deny{background:#fde2df;color:#8a1c12}.b.allow{background:#dff3e4;color:#145c2a}
tr.k-quarantine td,tr.k-violation td{background:#fff6f5}`;

export function renderReport(input: ReportInput): string {
  const k = kpis(input.records);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<title>agentbox audit report</title>
<style>${STYLE}</style></head>
<body>
<h1>agentbox audit report</h1>
<p class="meta">Generated ${e(input.generatedAt)} by agentbox ${e(input.version)}; period: ${input.since ? `since ${e(input.since)}` : 'the whole log'}; ${input.records.length} entries.</p>
${verifySection(input.logs)}
${kpiSection(k)}
${sessionSection(input.records)}
</body></html>
`;
}
