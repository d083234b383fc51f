/**
 * One schema: the published profiles/agentbox.schema.json (what editors load through
 * `# yaml-language-server: $schema=...`) is exactly the one agentbox validates with.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { schemaText } from '../../src/cli/commands/schema.js';
import { ROOT } from '../helpers/load.js';

describe('published schema', () => {
  it('matches the schema agentbox validates with (regenerate: agentbox schema > profiles/agentbox.schema.json)', () => {
    expect(readFileSync(join(ROOT, 'profiles/agentbox.schema.json'), 'utf8')).toBe(schemaText());
  });
  it('is a valid draft-07 schema an editor can compile', () => {
    const ajv = new Ajv({ strict: true, allowUnionTypes: true });
    expect(() => ajv.compile(JSON.parse(schemaText()))).not.toThrow();
  });
  it('every shipped profile points editors at it', () => {
    for (const f of ['presets/viewer.yaml', 'presets/editor.yaml', 'presets/organizer.yaml', 'agents/cowork.yaml', 'agents/claude-code.yaml', 'agents/codex.yaml', 'agents/shell.yaml']) {
      expect(readFileSync(join(ROOT, 'profiles', f), 'utf8').split('\n')[0], f).toBe('# yaml-language-server: $schema=../agentbox.schema.json');
    }
  });
});

describe('precompiled validator', () => {
  it('the build generates it from the same schema (it accepts and rejects alike)', async () => {
    const { validatorSource } = await import('../../src/host/build-validator.js');
    const src = validatorSource();
    expect(src).toContain(JSON.stringify(JSON.parse(schemaText())).slice(0, 80));
  });
});
