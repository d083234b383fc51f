/**
 * The import rules of src/, as data, and a checker over the real import graph (static
 * imports, re-exports and dynamic import() alike, read with the TypeScript scanner).
 * docs/architecture.md draws the same rooms.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

/** Pure rooms: data in, data out; no host access. */
export const PURE_ROOMS = ['model', 'escape', 'manifest', 'plan', 'policy', 'box', 'generate'] as const;
/** Files directly under src/ that any room may import (pure helpers), and env.ts (host rooms only). */
export const SHARED_FILES: Record<string, 'pure' | 'host'> = { 'errors.ts': 'pure', 'hash.ts': 'pure', 'version.ts': 'pure', 'env.ts': 'host' };

const pure = [...PURE_ROOMS];
/** Which rooms each room may import (besides itself and the shared files). */
export const ALLOWED: Record<string, readonly string[]> = {
  model: [],
  escape: [],
  manifest: ['model'],
  plan: ['model'],
  policy: ['model'],
  box: ['model', 'escape'],
  generate: ['model', 'plan', 'escape'],
  host: [...pure],
  tokens: [...pure],
  audit: [...pure, 'host'],
  apply: [...pure, 'host'],
  egress: [...pure, 'host', 'audit'],
  session: [...pure, 'host', 'audit', 'tokens', 'egress'],
  runtimes: [...pure, 'host', 'audit', 'session'],
  actions: [...pure, 'host', 'audit', 'tokens', 'apply', 'egress', 'session', 'runtimes'],
  cli: [...pure, 'actions'],
};

/** Node modules and packages a pure room may not import, and process state it may not read. */
export const HOST_MODULES = /^(node:)?(fs|fs\/promises|child_process|os|net|http|https|http2|dgram|v8|vm|worker_threads|dns|dns\/promises|readline|tty|cluster|process|module|inspector|perf_hooks)$|^(execa|dockerode|systeminformation|node-pty)$/;
export const HOST_GLOBALS = /\bprocess\s*(\.\s*(env|cwd|argv|exit|platform|getuid|getgid|stdin|stdout|stderr|kill|pid|on|once|chdir|umask)\b|\[)|\{[^}]*\}\s*=\s*process\b|\brequire\s*\(|\bcreateRequire\b/;

export interface Graph {
  /** src-relative file → src-relative files it imports (relative imports only). */
  edges: Map<string, string[]>;
  /** src-relative file → bare module specifiers it imports. */
  packages: Map<string, string[]>;
}

export function roomOf(file: string): string {
  const parts = file.split('/');
  return parts.length > 1 ? parts[0]! : file;
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

export function importGraph(srcDir: string): Graph {
  const edges = new Map<string, string[]>();
  const packages = new Map<string, string[]>();
  for (const f of files(srcDir)) {
    const rel = relative(srcDir, f);
    const text = readFileSync(f, 'utf8');
    const info = ts.preProcessFile(text, true, true);
    // The scanner skips `export * as ns from`; read those too.
    const specifiers = [...info.importedFiles.map((x) => x.fileName), ...[...text.matchAll(/export\s+(?:type\s+)?\*\s+as\s+\w+\s+from\s+['"]([^'"]+)['"]/g)].map((m) => m[1]!)];
    const local: string[] = [];
    const bare: string[] = [];
    for (const fileName of specifiers) {
      if (fileName.startsWith('.')) local.push(relative(srcDir, resolve(dirname(f), fileName)).replace(/\.js$/, '.ts'));
      else bare.push(fileName);
    }
    edges.set(rel, [...new Set(local)]);
    packages.set(rel, [...new Set(bare)]);
  }
  return { edges, packages };
}

/** Dynamic imports whose module is not a literal (the graph cannot see where they lead). */
export function opaqueImports(srcDir: string, allowed: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const f of files(srcDir)) {
    const rel = relative(srcDir, f);
    readFileSync(f, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (/\bimport\s*\(\s*(?!['"])/.test(line) && !/^\s*(\/\/|\*)/.test(line) && !allowed.has(`${rel}:${line.trim()}`)) out.push(`${rel}:${i + 1}: ${line.trim()}`);
      });
  }
  return out;
}

/** Every import that breaks a room rule, as "from -> to: why". */
export function roomViolations(g: Graph): string[] {
  const out: string[] = [];
  for (const [from, tos] of g.edges) {
    const a = roomOf(from);
    const rules = ALLOWED[a];
    if (!rules && !SHARED_FILES[from]) {
      out.push(`${from}: room "${a}" is not in the architecture's rules`);
      continue;
    }
    for (const to of tos) {
      const b = roomOf(to);
      if (a === b) continue;
      const shared = SHARED_FILES[to];
      // The shared files are leaves: they import nothing of src/ but the shared pure files.
      if (SHARED_FILES[from]) {
        if (shared !== 'pure') out.push(`${from} -> ${to}: a shared file imports ${shared ? 'env.ts' : 'a room'}`);
        continue;
      }
      if (shared === 'pure') continue;
      if (shared === 'host') {
        if ((PURE_ROOMS as readonly string[]).includes(a)) out.push(`${from} -> ${to}: a pure room reads the environment`);
        continue;
      }
      if (!rules!.includes(b)) out.push(`${from} -> ${to}: ${a} may not import ${b}`);
    }
  }
  return out;
}

/** Every host module a pure room imports. */
export function purityViolations(g: Graph): string[] {
  const out: string[] = [];
  for (const [from, mods] of g.packages) {
    if (!(PURE_ROOMS as readonly string[]).includes(roomOf(from)) && SHARED_FILES[from] !== 'pure') continue;
    for (const m of mods) if (HOST_MODULES.test(m)) out.push(`${from} imports ${m}`);
  }
  return out;
}

/** Import cycles between files (Tarjan's strongly connected components), each as its files. */
export function cycles(g: Graph): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of g.edges.get(v) ?? []) {
      if (!g.edges.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (g.edges.get(v) ?? []).includes(v)) found.push(scc.sort());
    }
  };
  for (const v of [...g.edges.keys()].sort()) if (!idx.has(v)) visit(v);
  return found;
}
