/**
 * HTML text and attribute values (the report): `& < > " '` as entities, and every
 * character a renderer would act on rather than show (controls, bidi overrides, line
 * separators) made visible the way the terminal shows it (termSafe). No value can open a
 * tag, close an attribute, or reorder what a person reads.
 */
import { termSafe } from './terminal.js';

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function htmlText(text: string): string {
  return termSafe(text).replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}
