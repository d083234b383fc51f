/**
 * The one output sink: data on stdout (JSON with --json, text otherwise), people's
 * messages on stderr. Commands never write to process.stdout/stderr directly.
 */
import { EnvVar } from '../env.js';

export interface Io {
  /** True when the user asked for --json. */
  readonly json: boolean;
  /** Data for scripts or the main human output. */
  out(text: string): void;
  /** Data as JSON (stdout). */
  data(value: unknown): void;
  /** A message for people (stderr). */
  info(text: string): void;
  warn(text: string): void;
  error(text: string): void;
  /** Colour helpers that respect NO_COLOR and non-TTY streams. */
  readonly style: Style;
}

export interface Style {
  bold(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  dim(s: string): string;
}

const plain: Style = { bold: (s) => s, red: (s) => s, green: (s) => s, yellow: (s) => s, dim: (s) => s };
const ansi = (code: number) => (s: string) => `\u001b[${code}m${s}\u001b[0m`;
const colored: Style = { bold: ansi(1), red: ansi(31), green: ansi(32), yellow: ansi(33), dim: ansi(2) };

export interface IoOptions {
  json: boolean;
  color?: boolean;
  stdout?: { write(s: string): unknown; isTTY?: boolean };
  stderr?: { write(s: string): unknown; isTTY?: boolean };
  env?: NodeJS.ProcessEnv;
}

export function createIo(opts: IoOptions): Io {
  const stdout = opts.stdout ?? process.stdout;
  const stderr = opts.stderr ?? process.stderr;
  const env = opts.env ?? process.env;
  const wantColor = opts.color ?? (!(EnvVar.noColor in env && env[EnvVar.noColor] !== '') && Boolean(stderr.isTTY));
  const style = wantColor ? colored : plain;
  const line = (s: string) => (s.endsWith('\n') ? s : s + '\n');
  return {
    json: opts.json,
    style,
    out: (text) => void stdout.write(line(text)),
    data: (value) => void stdout.write(JSON.stringify(value, null, 2) + '\n'),
    info: (text) => void stderr.write(line(text)),
    warn: (text) => void stderr.write(line(`${style.yellow('warning:')} ${text}`)),
    error: (text) => void stderr.write(line(`${style.red('error:')} ${text}`)),
  };
}
