/**
 * XML text and attribute escaping (also used for plist). The five predefined entities
 * are escaped; characters XML 1.0 cannot carry at all (most control characters) throw.
 */
import { UnrepresentableError } from './errors.js';

export function xmlText(value: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/.test(value)) throw new UnrepresentableError('XML', value, 'XML 1.0 cannot carry this character');
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** Text inside an XML comment: "--" may not appear and the text may not end with "-". */
export function xmlComment(text: string): string {
  const safe = xmlText(text).replace(/-(?=-)/g, '- ');
  return safe.endsWith('-') ? `${safe} ` : safe;
}
