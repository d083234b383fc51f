/**
 * A real PowerShell grammar (tree-sitter-powershell through web-tree-sitter) for
 * checking generated scripts: error nodes, and the commands a script would run.
 */
import { join } from 'node:path';
import { Language, Parser, type Node } from 'web-tree-sitter';
import { ROOT } from './load.js';

let parser: Parser | undefined;

export async function psParser(): Promise<Parser> {
  if (parser) return parser;
  await Parser.init();
  const lang = await Language.load(join(ROOT, 'node_modules/tree-sitter-powershell/tree-sitter-powershell.wasm'));
  parser = new Parser();
  parser.setLanguage(lang);
  return parser;
}

export interface PsReading {
  errors: string[];
  /** Names of every command invoked (cmdlets, functions, executables). */
  commands: string[];
  /** Every single-quoted string literal, unescaped. */
  strings: string[];
}

export async function readPowerShell(source: string): Promise<PsReading> {
  const tree = (await psParser()).parse(source)!;
  const errors: string[] = [];
  const commands = new Set<string>();
  const strings: string[] = [];
  const walk = (n: Node) => {
    if (n.type === 'ERROR' || n.isMissing) errors.push(`${n.startPosition.row + 1}:${n.startPosition.column}: ${n.type} ${n.text.slice(0, 80)}`);
    if (n.type === 'command') {
      const name = n.childForFieldName('command_name') ?? n.child(0);
      if (name) commands.add(name.text);
    }
    if (n.type === 'verbatim_string_characters') strings.push(n.text.slice(1, -1).replace(/(['\u2018\u2019\u201a\u201b])\1/g, '$1'));
    for (const c of n.children) if (c) walk(c);
  };
  walk(tree.rootNode);
  // Trees live in the WASM heap: free each one, or thousands of parses exhaust it.
  tree.delete();
  return { errors, commands: [...commands].sort(), strings };
}

const templateCache = new Map<string, string[]>();

/** The commands a template itself contains (placeholders replaced by inert literals). */
export async function templateCommands(template: string): Promise<string[]> {
  const cached = templateCache.get(template);
  if (cached) return cached;
  const filled = template
    .split('\n')
    .filter((l) => !/^\s*\{\{[a-zA-Z]+\}\}\s*$/.test(l))
    .join('\n')
    .replace(/\{\{[a-zA-Z]+\}\}/g, "'x'");
  const commands = (await readPowerShell(filled)).commands;
  templateCache.set(template, commands);
  return commands;
}
