/**
 * The one template renderer: `{{name}}` placeholders filled with values that the
 * generator has already escaped for the artifact's syntax. Pure.
 *
 * A value is a string or a list of lines; a placeholder standing alone on its line
 * and given an empty list removes that line. Every placeholder must be given and
 * every given value must be used, so a template and its generator cannot drift.
 */

export type Templates = Readonly<Record<string, string>>;
export type TemplateValue = string | readonly string[];

export function render(name: string, template: string, values: Readonly<Record<string, TemplateValue>>): string {
  const used = new Set<string>();
  const lines = template.split('\n');
  const out: string[] = [];
  for (const line of lines) {
    const alone = /^(\s*)\{\{([a-zA-Z][a-zA-Z0-9]*)\}\}\s*$/.exec(line);
    if (alone) {
      const [, indent, key] = alone as unknown as [string, string, string];
      const v = take(name, values, key, used);
      const list = typeof v === 'string' ? [v] : v;
      for (const l of list) out.push(l === '' ? '' : indent + l);
      continue;
    }
    out.push(
      line.replace(/\{\{([a-zA-Z][a-zA-Z0-9]*)\}\}/g, (_m, key: string) => {
        const v = take(name, values, key, used);
        if (typeof v !== 'string') throw new Error(`template ${name}: {{${key}}} is inline and needs a single value`);
        return v;
      }),
    );
  }
  const unused = Object.keys(values).filter((k) => !used.has(k));
  if (unused.length > 0) throw new Error(`template ${name}: values given but not used: ${unused.join(', ')}`);
  return out.join('\n');
}

function take(name: string, values: Readonly<Record<string, TemplateValue>>, key: string, used: Set<string>): TemplateValue {
  const v = values[key];
  if (v === undefined) throw new Error(`template ${name}: no value for {{${key}}}`);
  used.add(key);
  return v;
}

/** Looks a template up by its file name under templates/. */
export function template(templates: Templates, file: string): string {
  const t = templates[file];
  if (t === undefined) throw new Error(`template ${file} is missing from templates/`);
  return t;
}
