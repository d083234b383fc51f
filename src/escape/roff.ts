/**
 * roff (man pages): backslashes and hyphens escaped, a leading . or ' neutralised (so no
 * text line becomes a request), no control characters. Pure.
 */
export const roff = (s: string) =>
  s
    .replace(/[\p{Cc}]/gu, (c) => (c === '\n' ? '\n' : ' '))
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .split('\n')
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join('\n');
