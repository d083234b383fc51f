/**
 * The architecture, enforced: pure rooms (model, escape, manifest, plan, policy, box,
 * generate) import only pure rooms and never reach the host; cli imports actions and
 * pure rooms, never a runtime, the egress proxy or the session; every room imports only
 * the rooms below it (test/helpers/architecture.ts holds the table); no file imports
 * itself back through any chain. A violation fails here with the file and the import.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/load.js';
import { ALLOWED, cycles, HOST_GLOBALS, importGraph, opaqueImports, PURE_ROOMS, purityViolations, roomViolations, SHARED_FILES, type Graph } from '../helpers/architecture.js';

const SRC = join(ROOT, 'src');
const graph = importGraph(SRC);

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const fake = (edges: Record<string, string[]>, packages: Record<string, string[]> = {}): Graph => ({
  edges: new Map(Object.entries(edges)),
  packages: new Map(Object.entries({ ...Object.fromEntries(Object.keys(edges).map((k) => [k, []])), ...packages })),
});

describe('architecture', () => {
  it('the graph is the real one (every room of src/ is read)', () => {
    const rooms = new Set([...graph.edges.keys()].map((f) => f.split('/')[0]));
    for (const r of ['model', 'manifest', 'box', 'runtimes', 'egress', 'session', 'actions', 'cli']) expect(rooms).toContain(r);
    expect(graph.edges.get('cli/commands/launch.ts')).toContain('actions/launch.ts');
  });

  it('every import follows the room rules', () => {
    expect(roomViolations(graph)).toEqual([]);
  });

  it('pure rooms import no host module and read no process state', () => {
    // One reviewed exception: manifest/parse.ts loads ajv on demand through createRequire
    // (module loading, no host access), so a built agentbox never pays for it.
    const lazyAjv = (o: string) => o === 'manifest/parse.ts imports node:module' || /^src\/manifest\/parse\.ts:\d+: (import \{ createRequire \} from 'node:module';|const \{ Ajv \} = createRequire\(import\.meta\.url\)\('ajv'\) as typeof import\('ajv'\);)$/.test(o);
    const offences = purityViolations(graph);
    const pureFiles = [...PURE_ROOMS.flatMap((room) => files(join(SRC, room))), ...Object.entries(SHARED_FILES).filter(([, k]) => k === 'pure').map(([f]) => join(SRC, f))];
    {
      for (const f of pureFiles) {
        readFileSync(f, 'utf8')
          .split('\n')
          .forEach((line, i) => {
            if (HOST_GLOBALS.test(line)) offences.push(`${relative(ROOT, f)}:${i + 1}: ${line.trim()}`);
          });
      }
    }
    expect(offences.filter((o) => !lazyAjv(o))).toEqual([]);
  });

  it('every dynamic import names its module (the graph sees where it leads)', () => {
    // The one exception: the build's precompiled schema validator, found beside the bundle at run time.
    const allowed = new Set(["cli/main.ts:const mod = (await import(new URL('../manifest/schema-validator.js', import.meta.url).href)) as { default: Parameters<typeof usePrecompiledValidator>[0] };"]);
    expect(opaqueImports(SRC, allowed)).toEqual([]);
  });

  it('no import cycles', () => {
    expect(cycles(graph)).toEqual([]);
  });

  it('cli reaches the engines only through actions', () => {
    for (const room of ['runtimes', 'egress', 'session', 'audit', 'host', 'apply', 'tokens']) expect(ALLOWED.cli).not.toContain(room);
    for (const room of PURE_ROOMS) for (const other of ALLOWED[room]!) expect(PURE_ROOMS as readonly string[]).toContain(other);
  });

  it('the checker catches a pure room importing a host one, cli importing a runtime, and a cycle', () => {
    expect(roomViolations(fake({ 'model/types.ts': ['host/files.ts'], 'host/files.ts': [] }))).toEqual(['model/types.ts -> host/files.ts: model may not import host']);
    expect(roomViolations(fake({ 'box/bwrap.ts': ['session/records.ts'], 'session/records.ts': [] }))).toHaveLength(1);
    expect(roomViolations(fake({ 'cli/commands/launch.ts': ['runtimes/process/runtime.ts'], 'runtimes/process/runtime.ts': [] }))).toEqual(['cli/commands/launch.ts -> runtimes/process/runtime.ts: cli may not import runtimes']);
    expect(roomViolations(fake({ 'cli/commands/consent.ts': ['egress/consent.ts'], 'egress/consent.ts': [] }))).toHaveLength(1);
    expect(roomViolations(fake({ 'plan/plan.ts': ['env.ts'], 'env.ts': [] }))).toHaveLength(1);
    expect(purityViolations(fake({ 'box/x.ts': [] }, { 'box/x.ts': ['node:fs'] }))).toEqual(['box/x.ts imports node:fs']);
    expect(purityViolations(fake({ 'runtimes/x.ts': [] }, { 'runtimes/x.ts': ['node:fs'] }))).toEqual([]);
    expect(cycles(fake({ 'egress/a.ts': ['egress/b.ts'], 'egress/b.ts': ['egress/c.ts'], 'egress/c.ts': ['egress/a.ts'], 'egress/d.ts': ['egress/a.ts'] }))).toEqual([['egress/a.ts', 'egress/b.ts', 'egress/c.ts']]);
    expect(cycles(fake({ 'egress/a.ts': ['egress/b.ts'], 'egress/b.ts': [] }))).toEqual([]);
    expect(roomViolations(fake({ 'hash.ts': ['env.ts'], 'env.ts': [] }))).toEqual(['hash.ts -> env.ts: a shared file imports env.ts']);
    expect(roomViolations(fake({ 'env.ts': ['host/files.ts'], 'host/files.ts': [] }))).toHaveLength(1);
    expect(purityViolations(fake({ 'model/x.ts': [] }, { 'model/x.ts': ['node:process'] }))).toHaveLength(1);
    for (const line of ['const h = process.env.HOME;', "const h = process['env'];", 'const { env } = process;', "process.on('exit', f);", "const r = createRequire(import.meta.url);"]) expect(HOST_GLOBALS.test(line), line).toBe(true);
    expect(HOST_GLOBALS.test('const processed = items.map(f);')).toBe(false);
  });

  it('only cli/main.ts ends the process', () => {
    const offenders = files(SRC).filter((f) => !f.endsWith('cli/main.ts') && /process\.exit\(/.test(readFileSync(f, 'utf8')));
    expect(offenders).toEqual([]);
  });
});
