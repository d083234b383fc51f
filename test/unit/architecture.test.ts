/**
 * The pure core (manifest, model, plan, generate, policy) must not reach the host: no file
 * system, no processes, no engines, no process.* state. This keeps generation
 * deterministic and testable; a violation fails here with the file and the import.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/load.js';

const PURE = ['src/manifest', 'src/model', 'src/plan', 'src/generate', 'src/policy', 'src/box'];
const FORBIDDEN_IMPORTS = /from ['"](node:)?(fs|fs\/promises|child_process|os|net|http|https|dgram|v8|vm|worker_threads|dns|dns\/promises)['"]|from ['"](execa|dockerode|systeminformation)['"]|from ['"][./]+\/(host|apply|runtimes|egress|session|native|cli)\//;
const FORBIDDEN_GLOBALS = /\bprocess\.(env|cwd|argv|exit|platform|getuid)\b/;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('architecture', () => {
  it('pure folders import nothing that touches the host', () => {
    const offences: string[] = [];
    for (const dir of PURE) {
      for (const f of files(join(ROOT, dir))) {
        readFileSync(f, 'utf8')
          .split('\n')
          .forEach((line, i) => {
            if (FORBIDDEN_IMPORTS.test(line) || FORBIDDEN_GLOBALS.test(line)) offences.push(`${relative(ROOT, f)}:${i + 1}: ${line.trim()}`);
          });
      }
    }
    expect(offences).toEqual([]);
  });

  it('the guard itself catches an offending line', () => {
    expect(FORBIDDEN_IMPORTS.test("import { readFileSync } from 'node:fs';")).toBe(true);
    expect(FORBIDDEN_IMPORTS.test("import { execa } from 'execa';")).toBe(true);
    expect(FORBIDDEN_IMPORTS.test("import { setFlagsFromString } from 'node:v8';")).toBe(true);
    expect(FORBIDDEN_IMPORTS.test("import { x } from '../host/files.js';")).toBe(true);
    expect(FORBIDDEN_GLOBALS.test('const h = process.env.HOME;')).toBe(true);
  });

  it('only cli/main.ts ends the process', () => {
    const offenders = files(join(ROOT, 'src')).filter((f) => !f.endsWith('cli/main.ts') && /process\.exit\(/.test(readFileSync(f, 'utf8')));
    expect(offenders).toEqual([]);
  });
});
