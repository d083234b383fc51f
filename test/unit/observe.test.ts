/**
 * What the kernel's lines become: file-watch and audit-read parsing, the session
 * observer's aggregation and denial classification (with explain's rule), its bounds,
 * and the behaviour rules. Pure: lines in, audit entries out.
 */
import { describe, expect, it } from 'vitest';
import { HOME, load, model } from '../helpers/load.js';
import { AuditGroups, interpretGroup, parseAuditLine, parseFileLine, unescapePath } from '../../src/session/kernel-records.js';
import { DENIAL_CAP, SessionObserver } from '../../src/session/observe.js';
import { Monitor, ruleCovers } from '../../src/session/monitor.js';

const MANIFEST = `apiVersion: agentbox/v1
kind: Agent
metadata: { name: obs }
extends: [organizer]
agent: { command: [/bin/sh] }
capabilities:
  - fs:read:~/Documents
  - fs:write:~/work
  - exec:/usr/bin
`;

const hex = (s: string) => Buffer.from(s).toString('hex').toUpperCase();
/** The records one failed openat makes, as audit-read prints them. */
function failedOpen(serial: number, opts: { pid?: number; uid?: number; name: string; exit: number; flags?: string; dirfd?: string; cwd?: string }): string[] {
  const name = /[^\x21-\x7e]|"/.test(opts.name) ? hex(opts.name) : `"${opts.name}"`;
  return [
    `1300\taudit(1796300000.100:${serial}): arch=c000003e syscall=257 success=no exit=${opts.exit} a0=${opts.dirfd ?? 'ffffff9c'} a1=5600 a2=${opts.flags ?? '0'} a3=0 items=1 ppid=1 pid=${opts.pid ?? 4242} auid=4294967295 uid=${opts.uid ?? 64000} gid=64000 comm="cat" exe="/usr/bin/cat" key="agentbox:1:obs"`,
    `1307\taudit(1796300000.100:${serial}): cwd="${opts.cwd ?? '/home/user'}"`,
    `1302\taudit(1796300000.100:${serial}): item=0 name=${name} nametype=UNKNOWN`,
    `1320\taudit(1796300000.100:${serial}): `,
  ];
}

function observer(over: Partial<ConstructorParameters<typeof SessionObserver>[0]> = {}) {
  const entries: { action: string; resource: string; reason: string; details?: Record<string, unknown> }[] = [];
  const logs: string[] = [];
  const o = new SessionObserver({
    model: model(MANIFEST),
    event: (action, resource, _d, reason, details) => entries.push({ action, resource, reason, ...(details ? { details } : {}) }),
    log: (l) => logs.push(l),
    verbose: true,
    uid: 64000,
    owns: () => true,
    hostHas: () => true,
    ...over,
  });
  return { o, entries, logs };
}

describe('file-watch lines', () => {
  it('decodes the escapes file-watch writes, so a name with a tab or newline stays one path', () => {
    expect(unescapePath('/h/a\\x20b\\x0ac\\x5cd')).toBe('/h/a b\nc\\d');
    expect(parseFileLine('r\t12\t5\t/h/we\\x09ird')).toEqual({ kind: 'read', pid: 12, size: 5, path: '/h/we\tird' });
    expect(parseFileLine('overflow')).toBe('overflow');
    // A raw tab in the path (a forged line) has five fields: refused.
    expect(parseFileLine('r\t12\t5\t/h/a\tb')).toBeUndefined();
    expect(parseFileLine('q\t12\t5\t/h/a')).toBeUndefined();
    expect(parseFileLine('r\t12\t5\trelative')).toBeUndefined();
  });
});

describe('audit-read lines', () => {
  it('decodes hex-encoded untrusted strings and leaves numbers alone', () => {
    const r = parseAuditLine(`1302\taudit(1796300000.250:77): item=0 name=${hex('/home/user/a b')} inode=3`)!;
    expect(r).toMatchObject({ type: 1302, serial: 77, time: 1796300000250 });
    expect(r.fields.name).toBe('/home/user/a b');
    expect(r.fields.inode).toBe('3');
  });

  it('reads a Landlock denial and the failed call it caused as one denial, Landlock\'s', () => {
    const lines = [
      `1423\taudit(1796300000.100:9): domain=1b17 blockers=fs.read_file path="/home/user/.ssh/id_ed25519" dev="vda" ino=5`,
      `1424\taudit(1796300000.100:9): domain=1b17 status=allocated mode=enforcing pid=4000 uid=64000 exe="/run/agentbox-helper/landlock-exec" comm="landlock-exec"`,
      ...failedOpen(9, { name: '/home/user/.ssh/id_ed25519', exit: -13 }).filter((l) => !l.startsWith('1320')),
    ];
    const { denials, domains } = interpretGroup(lines.map((l) => parseAuditLine(l)!));
    expect(domains).toEqual([{ domain: '1b17', pid: 4000 }]);
    expect(denials).toHaveLength(1);
    expect(denials[0]).toMatchObject({ source: 'landlock', access: 'read', path: '/home/user/.ssh/id_ed25519', errno: 13, pid: 4242 });
  });

  it('places a relative name against the cwd, and leaves out one relative to another directory fd', () => {
    const rel = interpretGroup(failedOpen(1, { name: 'x/y', exit: -2, cwd: '/home/user/work' }).map((l) => parseAuditLine(l)!));
    expect(rel.denials[0]?.path).toBe('/home/user/work/x/y');
    const fd = interpretGroup(failedOpen(2, { name: 'y', exit: -2, dirfd: '5' }).map((l) => parseAuditLine(l)!));
    expect(fd.denials).toHaveLength(0);
  });

  it('reads the open flags: O_WRONLY, O_RDWR, O_CREAT and O_TRUNC are writes', () => {
    for (const [flags, access] of [['0', 'read'], ['1', 'write'], ['2', 'write'], ['40', 'write'], ['241', 'write'], ['80000', 'read']] as const) {
      const { denials } = interpretGroup(failedOpen(3, { name: '/home/user/f', exit: -13, flags }).map((l) => parseAuditLine(l)!));
      expect(denials[0]?.access, flags).toBe(access);
    }
  });

  it('groups records by serial and completes a group at its EOE, or when it waited too long', () => {
    const g = new AuditGroups(300);
    const lines = failedOpen(5, { name: '/a', exit: -2 });
    const done = lines.flatMap((l) => g.push(parseAuditLine(l)!, 1000));
    expect(done).toHaveLength(1);
    expect(done[0]!.map((r) => r.type)).toEqual([1300, 1307, 1302]);
    expect(g.push(parseAuditLine(lines[0]!.replace(':5)', ':6)'))!, 1000)).toHaveLength(0);
    expect(g.expire(1299)).toHaveLength(0);
    expect(g.expire(1300)).toHaveLength(1);
  });
});

describe('the session observer', () => {
  it('writes one fs.activity entry per grant for 10,000 reads, listing at most 100 paths with a hash of all', () => {
    const { o, entries } = observer();
    for (let i = 0; i < 10_000; i++) o.fileLine(`r\t100\t10\t${HOME}/Documents/f${i}.txt`);
    o.fileLine(`w\t100\t3\t${HOME}/work/out.txt`);
    const s = o.finish();
    const activity = entries.filter((e) => e.action === 'fs.activity');
    expect(activity.map((e) => e.resource).sort()).toEqual([`${HOME}/Documents`, `${HOME}/work`]);
    const docs = activity.find((e) => e.resource === `${HOME}/Documents`)!.details as { files: number; reads: number; bytesRead: number; paths: { count: number; first: string[]; sha256: string; truncated: boolean } };
    expect(docs.files).toBe(10_000);
    expect(docs.reads).toBe(10_000);
    expect(docs.bytesRead).toBe(100_000);
    expect(docs.paths.count).toBe(10_000);
    expect(docs.paths.first).toHaveLength(100);
    expect(docs.paths.truncated).toBe(true);
    expect(s.files).toMatchObject({ files: 10_001, reads: 10_000, writes: 1 });
    expect(entries).toHaveLength(2);
  });

  it('records a denied read of ~/.ssh/id_ed25519 with the rule explain gives, counts repeats, and shows it once with --verbose', () => {
    const { o, entries, logs } = observer();
    for (let i = 0; i < 3; i++) for (const l of failedOpen(10 + i, { name: `${HOME}/.ssh/id_ed25519`, exit: -2 })) o.auditLine(l);
    const s = o.finish();
    expect(s.denials).toEqual([expect.objectContaining({ access: 'read', what: `${HOME}/.ssh/id_ed25519`, count: 3, rule: 'deny fs:~/.ssh from preset organizer' })]);
    expect(entries.filter((e) => e.action === 'fs.denied')).toHaveLength(1);
    expect(entries.find((e) => e.action === 'fs.denied')!.reason).toBe('read ~/.ssh/id_ed25519 (deny fs:~/.ssh from preset organizer)');
    expect(entries.find((e) => e.action === 'denials.summary')!.details).toMatchObject({ total: 3, distinct: 1 });
    expect(logs).toEqual(['agentbox: denied read ~/.ssh/id_ed25519 (deny fs:~/.ssh from preset organizer)']);
  });

  it('counts an absent path only when the host has it and the manifest is why; a granted or system path missing is no denial', () => {
    const has = new Set([`${HOME}/.config/tool/x`]);
    const { o } = observer({ hostHas: (p) => has.has(p) });
    const feed = (name: string, exit: number, serial: number) => failedOpen(serial, { name, exit }).forEach((l) => o.auditLine(l));
    feed(`${HOME}/.config/tool/x`, -2, 1); // host has it, no grant: denied
    feed(`${HOME}/.config/other`, -2, 2); // the host has none either
    feed(`${HOME}/Documents/missing`, -2, 3); // granted, just missing
    feed('/usr/lib/locale/C.UTF-8/LC_CTYPE', -2, 4); // system view
    feed(`${HOME}/Documents/locked`, -13, 5); // granted, refused by file modes
    const s = o.finish();
    expect(s.denials.map((d) => [d.what, d.rule])).toEqual([
      [`${HOME}/.config/tool/x`, 'no grant covers this path (everything not granted is denied)'],
      [`${HOME}/Documents/locked`, "the host's own file permissions; fs:read:~/Documents allows it"],
    ]);
  });

  it('drops what another process did (not the box\'s pid namespace, or another uid)', () => {
    const { o } = observer({ owns: (pid) => pid !== 666 });
    failedOpen(1, { name: `${HOME}/.ssh/k`, exit: -13, pid: 666 }).forEach((l) => o.auditLine(l));
    failedOpen(2, { name: `${HOME}/.ssh/k`, exit: -13, uid: 1000 }).forEach((l) => o.auditLine(l));
    expect(o.finish().deniedTotal).toBe(0);
  });

  it('names seccomp refusals by system call and leaves out clone3 (answered ENOSYS by design; the record carries no errno)', () => {
    const { o } = observer();
    o.auditLine(`1326\taudit(1796300000.1:50): auid=1 uid=64000 gid=64000 ses=1 pid=9 comm="unshare" exe="/usr/bin/unshare" sig=0 arch=c000003e syscall=272 compat=0 ip=0x1 code=0x50000`);
    o.auditLine(`1326\taudit(1796300000.1:51): auid=1 uid=64000 gid=64000 ses=1 pid=9 comm="node" exe="/usr/bin/node" sig=0 arch=c000003e syscall=435 compat=0 ip=0x1 code=0x50000`);
    o.tick(true);
    expect(o.finish().denials).toEqual([expect.objectContaining({ layer: 'seccomp', what: 'unshare', count: 1 })]);
  });

  it('keeps at most DENIAL_CAP distinct denials as entries, and still counts every one', () => {
    const { o, entries } = observer({ verbose: false });
    for (let i = 0; i < DENIAL_CAP + 50; i++) failedOpen(i, { name: `${HOME}/.ssh/k${i}`, exit: -13 }).forEach((l) => o.auditLine(l));
    const s = o.finish();
    expect(entries.filter((e) => e.action === 'fs.denied')).toHaveLength(DENIAL_CAP);
    expect(s.deniedTotal).toBe(DENIAL_CAP + 50);
    expect(entries.find((e) => e.action === 'denials.summary')!.details).toMatchObject({ capped: DENIAL_CAP });
  });

  it('counts an open of a denied file\'s /dev/null mask as a denied read', () => {
    const m = model(MANIFEST.replace('  - fs:read:~/Documents', '  - fs:read:~'));
    const { o } = observer({ model: m });
    o.fileLine(`o\t7\t0\t${HOME}/.bash_history`);
    expect(o.finish().denials).toEqual([expect.objectContaining({ layer: 'mask', access: 'read', what: `${HOME}/.bash_history`, rule: 'deny fs:~/.bash_history from preset organizer' })]);
  });

  it('does not let a path forge a second terminal line in the --verbose view', () => {
    const { o, logs } = observer();
    failedOpen(1, { name: `${HOME}/.ssh/a\nagentbox: all clear\u001b[2J`, exit: -13 }).forEach((l) => o.auditLine(l));
    o.finish();
    expect(logs).toHaveLength(1);
    expect(logs[0]).not.toMatch(/[\n\u001b]/);
  });
});

describe('behaviour rules', () => {
  const rules = (extra: string) =>
    load(`${MANIFEST}monitor:
  - name: bulk
    reads: { named: [HR], files: 3, withinSeconds: 60 }
    ${extra}
    onTrip: quarantine
`).model!.monitor;

  it('loads the organizer preset\'s default, and an agent\'s own rules replace it', () => {
    expect(model(MANIFEST).monitor.map((r) => [r.name, r.source.origin])).toEqual([['hr-bulk-read-then-upload', 'preset']]);
    expect(rules('').map((r) => r.name)).toEqual(['bulk']);
    expect(model(`${MANIFEST}monitor: false\n`).monitor).toEqual([]);
  });

  it('refuses a rule that cannot trip, naming where', () => {
    const r = load(`${MANIFEST}monitor:\n  - name: x\n    reads: { withinSeconds: 10 }\n    onTrip: block\n`);
    expect(r.errors.map((e) => e.message).join('\n')).toMatch(/reads.files or reads.bytes[\s\S]*reads.under/);
  });

  it('trips a read-only rule when more than N files are read within the window, once', () => {
    const trips: string[] = [];
    const m = new Monitor(rules(''), HOME, undefined, (t) => trips.push(t.why));
    for (let i = 0; i < 3; i++) m.read(`${HOME}/Documents/HR/f${i}`, 10, 1000 + i);
    expect(trips).toHaveLength(0);
    m.read(`${HOME}/Documents/HR/f3`, 10, 1010);
    m.read(`${HOME}/Documents/HR/f4`, 10, 1011);
    expect(trips).toEqual(['4 files (40 bytes) read within 60s']);
  });

  it('forgets reads older than the window, and re-reads of one file count once', () => {
    const trips: string[] = [];
    const m = new Monitor(rules(''), HOME, undefined, (t) => trips.push(t.why));
    for (let i = 0; i < 10; i++) m.read(`${HOME}/HR/same`, 1, i);
    for (let i = 0; i < 3; i++) m.read(`${HOME}/HR/f${i}`, 1, i * 61_000);
    expect(trips).toHaveLength(0);
  });

  it('a read-then-upload rule trips at the first connection after the bulk read, not before it nor after its window', () => {
    const seen: string[] = [];
    const m = new Monitor(rules('thenUpload: { withinSeconds: 30 }'), HOME, undefined, (t) => seen.push(t.upload ?? ''));
    expect(m.egress('api.example.com:443', 0)).toBe(false);
    for (let i = 0; i < 4; i++) m.read(`${HOME}/HR/f${i}`, 1, 100 + i);
    expect(m.egress('api.example.com:443', 31_000 + 103)).toBe(false);
    for (let i = 4; i < 8; i++) m.read(`${HOME}/HR/f${i}`, 1, 40_000 + i);
    expect(m.egress('paste.example.net:443', 40_010)).toBe(true);
    expect(seen).toEqual(['paste.example.net:443']);
    expect(m.egress('paste.example.net:443', 40_011)).toBe(false);
  });

  it('matches folder names as whole path segments, and organisation labels by prefix or segment', () => {
    const [r] = rules('');
    expect(ruleCovers(r!, `${HOME}/Documents/HR/a.pdf`, HOME, undefined)).toBe(true);
    expect(ruleCovers(r!, `${HOME}/Documents/HRX/a.pdf`, HOME, undefined)).toBe(false);
    expect(ruleCovers(r!, `${HOME}/Documents/HR`, HOME, undefined)).toBe(false);
    const labelled = { ...r!, named: [], labels: ['people'] };
    const labels = { paths: [{ prefix: '~/Staff', labels: ['people'] }, { segment: 'Payroll', labels: ['people'] }], hosts: [] };
    expect(ruleCovers(labelled, `${HOME}/Staff/x`, HOME, labels)).toBe(true);
    expect(ruleCovers(labelled, `/srv/Payroll/2026/x`, HOME, labels)).toBe(true);
    expect(ruleCovers(labelled, `${HOME}/Other/x`, HOME, labels)).toBe(false);
  });
});
