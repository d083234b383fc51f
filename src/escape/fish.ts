/**
 * fish shell: a single-quoted word (inside, only \\ and \' are escapes); control
 * characters become spaces. Pure.
 */
export const fishQuote = (s: string) => `'${s.replace(/[\p{Cc}]/gu, ' ').replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
