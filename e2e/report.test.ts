/**
 * `agentbox report` opened in Debian's Chromium (headless, driven by playwright-core).
 *
 * Attacks and defences:
 * - an agent-controlled value in the log (a host, a consent purpose) carries markup or
 *   script (`<img onerror>`, `</table><script>`). Defence: every value through htmlText,
 *   no script in the page at all, and a CSP of default-src 'none': nothing runs, nothing
 *   is added to the DOM;
 * - the report reaches out (a CDN, a beacon) when a responder opens it. Defence: no
 *   external resource; the test records every request the page makes;
 * - a tampered log reads as fine in the report. Defence: verification comes first, per log.
 *
 * The KPIs are computed here, independently of src/audit/timeline.ts, from the entries
 * the fixture wrote.
 */
import { execa } from 'execa';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditSink } from '../src/audit/sink.js';
import type { AuditRecord } from '../src/audit/record.js';
import { agentbox } from '../test/helpers/cli.js';
import { ROOT } from '../test/helpers/load.js';

const state = mkdtempSync(join(tmpdir(), 'agentbox-report-'));
const env = { AGENTBOX_STATE_DIR: state };
const HOSTILE = `evil.example"><img src=x onerror="document.title='pwned'"></td></table><script>document.title='pwned'</script>:443`;
let browser: Browser;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Three sessions as the launcher, the proxy and a responder write them. */
async function fixture(): Promise<void> {
  const a = new AuditSink(state);
  const w = (session: string, agent: string, action: string, resource: string, decision: 'allow' | 'deny' | 'info', reason: string, details?: Record<string, unknown>) => a.append({ session, agent, action, resource, decision, reason, ...(details ? { details } : {}) });
  // 1: an organizer session: two allowed, one denied, a consent approved after ~300 ms, reverted.
  w('cowork-aaaa0001', 'cowork', 'launch', '/usr/bin/cowork', 'allow', 'session started');
  w('cowork-aaaa0001', 'cowork', 'egress.connect', 'api.anthropic.com:443', 'allow', 'granted', { rule: 'net:connect:api.anthropic.com:443 (capabilities[2])' });
  w('cowork-aaaa0001', 'cowork', 'egress.connect', 'api.anthropic.com:443', 'allow', 'closed', { bytesIn: 10, bytesOut: 20 });
  w('cowork-aaaa0001', 'cowork', 'egress.http', 'registry.npmjs.org:443', 'allow', 'granted', { rule: 'net:connect:registry.npmjs.org:443 (capabilities[3])' });
  w('cowork-aaaa0001', 'cowork', 'egress.connect', HOSTILE, 'deny', 'not granted: no grant covers evil.example', { rule: null });
  w('cowork-aaaa0001', 'cowork', 'consent.request', 'docs.example.com:443', 'info', 'cowork asks to reach docs.example.com:443 to read the docs', { id: 'c1' });
  await sleep(300);
  w('cowork-aaaa0001', 'cowork', 'consent.answer', 'docs.example.com:443', 'allow', 'alice answered allow once', { id: 'c1', answer: 'once', by: 'alice' });
  w('cowork-aaaa0001', 'cowork', 'exit', 'cowork-aaaa0001', 'info', 'exited', { exitCode: 0 });
  w('cowork-aaaa0001', 'cowork', 'revert', 'cowork-aaaa0001', 'info', '3 changes discarded');
  // 2: a leak: DLP violation, quarantine ~200 ms later, released ~250 ms after that.
  w('claude-code-bbbb0002', 'claude-code', 'launch', '/usr/local/bin/claude', 'allow', 'session started');
  w('claude-code-bbbb0002', 'claude-code', 'egress.http', 'paste.example.net:443', 'deny', "data-loss prevention: the request's body matches detector aws-access-key; it was not sent");
  w('claude-code-bbbb0002', 'claude-code', 'violation.dlp', 'paste.example.net:443', 'deny', 'aws-access-key in the body; onViolation: quarantine');
  await sleep(200);
  w('claude-code-bbbb0002', 'claude-code', 'quarantine.requested', 'claude-code-bbbb0002', 'deny', 'onViolation', { by: 'root (uid 0)' });
  w('claude-code-bbbb0002', 'claude-code', 'quarantine.frozen', 'claude-code-bbbb0002', 'deny', 'cgroup freezer: every process of the session is frozen');
  await sleep(250);
  w('claude-code-bbbb0002', 'claude-code', 'quarantine.released', 'claude-code-bbbb0002', 'info', 'released by uid 0');
  // 3: still frozen: one egress denial, file activity, a kernel denial (three times), and a
  // bulk read that trips the monitor, whose quarantine the launcher does itself ~150 ms later.
  w('codex-cccc0003', 'codex', 'launch', '/usr/local/bin/codex', 'allow', 'session started', { grants: ['fs:write:~/work', 'net:connect:api.openai.com:443'] });
  w('codex-cccc0003', 'codex', 'egress.connect', 'api.openai.com:443', 'deny', 'not granted: no grant covers api.openai.com');
  w('codex-cccc0003', 'codex', 'fs.activity', '/home/u/work', 'info', '40 files: 40 reads, 0 writes, 0 runs', { files: 40, reads: 40, writes: 0, execs: 0 });
  w('codex-cccc0003', 'codex', 'fs.denied', '/home/u/.ssh/id_ed25519', 'deny', 'read ~/.ssh/id_ed25519 (deny fs:~/.ssh from preset organizer)', { layer: 'file-call', access: 'read' });
  w('codex-cccc0003', 'codex', 'monitor.tripped', 'hr-bulk-read-then-upload', 'deny', '40 files (800 bytes) read within 300s, then a connection to paste.example.net:443; onTrip: quarantine', { rule: 'hr-bulk-read-then-upload' });
  await sleep(150);
  w('codex-cccc0003', 'codex', 'quarantine.frozen', 'codex-cccc0003', 'deny', 'cgroup freezer: every process of the session is frozen');
  w('codex-cccc0003', 'codex', 'denials.summary', '3 denials', 'deny', '3 denials, 1 distinct', { total: 3, distinct: 1 });
}

const records = (): AuditRecord[] => readFileSync(join(state, 'audit.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord);

beforeAll(async () => {
  await fixture();
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
}, 60_000);
afterAll(async () => browser?.close());

async function open(file: string) {
  const page = await browser.newPage({ viewport: { width: 1160, height: 900 } });
  const errors: string[] = [];
  const requests: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(`file://${file}`);
  await page.waitForLoadState('load');
  return { page, errors, requests };
}

describe('agentbox report in headless Chromium', () => {
  it('renders with no console errors and no network requests; nothing from the log runs or adds markup', async () => {
    const out = join(state, 'report.html');
    const r = await agentbox(['report', '--out', out], { env });
    expect(r.code, r.stderr).toBe(0);
    const { page, errors, requests } = await open(out);
    expect(errors).toEqual([]);
    expect(requests).toEqual([`file://${out}`]);
    expect(await page.title()).toBe('agentbox audit report');
    expect(await page.locator('script').count()).toBe(0);
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.getByText(HOSTILE, { exact: false }).count()).toBeGreaterThan(0);
    await page.screenshot({ path: join(state, 'report.png'), fullPage: true });
    expect(statSync(join(state, 'report.png')).size).toBeGreaterThan(20_000);
    // The committed screenshot is this page (docs/report.png); refreshed when the report changes.
    if (process.env.AGENTBOX_UPDATE_SCREENSHOT) copyFileSync(join(state, 'report.png'), join(ROOT, 'docs', 'report.png'));
    expect(existsSync(join(ROOT, 'docs', 'report.png'))).toBe(true);
    await page.close();
  }, 60_000);

  it('shows verification first, the sessions in order, and KPI values computed independently', async () => {
    const out = join(state, 'report.html');
    const { page } = await open(out);
    const sections = await page.locator('section').evaluateAll((els) => els.map((e) => e.id));
    expect(sections).toEqual(['verification', 'kpis', 'sessions']);
    expect(await page.locator('[data-log-state]').evaluateAll((els) => els.map((e) => e.getAttribute('data-log-state')))).toEqual(['ok']);
    expect(await page.locator('[data-session]').evaluateAll((els) => els.map((e) => e.getAttribute('data-session')))).toEqual(['cowork-aaaa0001', 'claude-code-bbbb0002', 'codex-cccc0003']);

    const rs = records();
    const at = (action: string, session?: string) => rs.find((x) => x.action === action && (!session || x.session === session))!.time;
    const decisions = rs.filter((x) => ['egress.connect', 'egress.http', 'egress.https'].includes(x.action) && x.reason !== 'closed');
    const approveMs = Date.parse(at('consent.answer')) - Date.parse(at('consent.request'));
    // Detection: a violation or a tripped rule, to the quarantine (asked for, or the launcher's own).
    const mttd = (Date.parse(at('quarantine.requested')) - Date.parse(at('violation.dlp')) + (Date.parse(at('quarantine.frozen', 'codex-cccc0003')) - Date.parse(at('monitor.tripped')))) / 2;
    const mttr = Date.parse(at('quarantine.released')) - Date.parse(at('quarantine.requested'));
    const fmt = (ms: number) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`);
    const kpi = async (k: string) => (await page.locator(`[data-kpi="${k}"]`).textContent())?.trim();
    expect(await kpi('sessions')).toBe('3');
    expect(await kpi('allowed')).toBe(String(decisions.filter((x) => x.decision === 'allow').length));
    expect(await kpi('allowed')).toBe('2');
    expect(await kpi('denied')).toBe('3');
    expect(await kpi('escalations')).toBe('1');
    expect(await kpi('time-to-approve')).toBe(fmt(approveMs));
    expect(approveMs).toBeGreaterThanOrEqual(300);
    expect(await kpi('blocked-uploads')).toBe('1');
    expect(await kpi('rollback-rate')).toBe('100%');
    expect(await kpi('quarantines')).toBe('2');
    expect(await kpi('kernel-denials')).toBe(String(rs.filter((x) => x.action === 'denials.summary').reduce((n, x) => n + Number(x.details?.total), 0)));
    expect(await kpi('kernel-denials')).toBe('3');
    expect(await kpi('threshold-hits')).toBe('1');
    expect(await kpi('mttd')).toBe(fmt(mttd));
    expect(await kpi('mttr')).toBe(fmt(mttr));
    // The timeline of the leak, in order, with the operator.
    const leak = await page.locator('[data-session="claude-code-bbbb0002"] tr').evaluateAll((els) => els.map((e) => e.getAttribute('data-kind')));
    expect(leak).toEqual(['launch', 'egress-deny', 'violation', 'quarantine', 'quarantine', 'release']);
    expect(await page.locator('[data-session="claude-code-bbbb0002"]').textContent()).toContain('quarantine requested by root (uid 0)');
    // The frozen session: its grants, file activity, kernel denials and the rule that tripped.
    const codex = await page.locator('[data-session="codex-cccc0003"] tr').evaluateAll((els) => els.map((e) => e.getAttribute('data-kind')));
    expect(codex).toEqual(['launch', 'egress-deny', 'file-activity', 'fs-deny', 'threshold', 'quarantine', 'fs-deny']);
    const codexText = await page.locator('[data-session="codex-cccc0003"]').textContent();
    expect(codexText).toContain('grants: fs:write:~/work, net:connect:api.openai.com:443');
    expect(codexText).toContain('monitor rule hr-bulk-read-then-upload tripped');
    await page.close();
  }, 60_000);

  it('a tampered log still gives a report, exit 1, with the break shown first', async () => {
    const copy = join(state, 'tampered.jsonl');
    writeFileSync(copy, readFileSync(join(state, 'audit.jsonl'), 'utf8').replace('"3 changes discarded"', '"0 changes discarded"'));
    const out = join(state, 'tampered.html');
    const r = await agentbox(['report', copy, '--out', out], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/does not verify/);
    const { page, errors } = await open(out);
    expect(errors).toEqual([]);
    expect(await page.locator('[data-log-state]').first().getAttribute('data-log-state')).toBe('bad');
    expect(await page.locator('#verification').textContent()).toMatch(/line 9 \(seq 9\): its signature does not match/);
    await page.close();
  }, 60_000);

  it('audit show prints the same timeline as text, terminal-safe', async () => {
    const r = await agentbox(['audit', 'show', '--session', 'cowork-aaaa0001'], { env });
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n').filter(Boolean);
    expect(lines[0]).toMatch(/^cowork-aaaa0001 {2}cowork {2}\d{4}-/);
    expect(lines.slice(1).map((l) => l.replace(/^ {2}\S+ {2}(allow|deny |info ) {2}/, ''))).toEqual([
      'launched: /usr/bin/cowork',
      'connect api.anthropic.com:443 allowed (net:connect:api.anthropic.com:443 (capabilities[2]))',
      'http registry.npmjs.org:443 allowed (net:connect:registry.npmjs.org:443 (capabilities[3]))',
      `connect ${HOSTILE} denied: not granted: no grant covers evil.example`,
      'asked: cowork asks to reach docs.example.com:443 to read the docs',
      'consent for docs.example.com:443: alice answered allow once',
      'exited (exited, exit code 0)',
      'reverted: 3 changes discarded',
    ]);
    const e = await execa(process.execPath, [join(ROOT, 'bin', 'agentbox.js'), 'audit', 'show', '--since', 'x'], { reject: false, env: { ...env, NO_COLOR: '1' } });
    expect(e.exitCode).toBe(2);
    expect(e.stderr).toMatch(/--since x: give an ISO time/);
  });
});
