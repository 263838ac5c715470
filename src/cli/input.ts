/** Reading a config file for the CLI, with errors a person can act on. */
import { readFile } from 'node:fs/promises';
import type { FieldError } from '../model/normalize.js';
import { UsageError } from './args.js';

export async function readJsonFile(path: string | undefined, command: string): Promise<unknown> {
  if (!path) throw new UsageError(`missing CONFIG.json argument; see resonance ${command} --help`, command);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a directory' : code === 'EACCES' ? 'permission denied' : (code ?? String(err));
    throw new UsageError(`cannot read ${path}: ${why}`, command);
  }
  // Editors on Windows may save a byte order mark, which JSON.parse refuses.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new UsageError(jsonErrorReport(path, text, (err as Error).message), command);
  }
}

/** V8's offset at the end of its message (Node 22 adds the line and column after it). */
const POSITION = / at position (\d+)(?: \(line \d+ column \d+\))?$/;

/**
 * `FILE:LINE:COLUMN: what`, then the line and a caret under the column. V8's message gives the offset
 * ("... in JSON at position N") except for an unexpected token (`Unexpected token '}', "..." is not
 * valid JSON`) and an unexpected end; those are found by parsing prefixes (jsonErrorOffset).
 */
export function jsonErrorReport(path: string, text: string, message: string): string {
  const position = POSITION.exec(message);
  const offset = position ? Number(position[1]) : jsonErrorOffset(text);
  // Without the position, or V8's excerpt of the text (`, ..."seed": tru}" is not valid JSON`): the
  // caret line shows where.
  const what = (position ? message.slice(0, position.index).replace(/ in JSON$/, '') : message.replace(/, (\.\.\.)?".*"(\.\.\.)? is not valid JSON$/s, ''))
    .replace(/[\n\r\t]/g, (c) => JSON.stringify(c).slice(1, -1));
  const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
  const line = text.slice(0, lineStart).split('\n').length;
  const lineEnd = text.indexOf('\n', lineStart);
  const lineText = text.slice(lineStart, lineEnd === -1 ? text.length : lineEnd).replace(/\r$/, '');
  // Columns in characters (code points), as editors count them.
  const column = [...text.slice(lineStart, offset)].length + 1;
  const report = `${path}:${line}:${column}: ${what}`;
  // The line with a caret under the column (tabs kept so that it lines up); not for a minified document.
  if (lineText.length > 160 || lineText.trim() === '') return report;
  const pad = [...text.slice(lineStart, offset)].map((c) => (c === '\t' ? '\t' : ' ')).join('');
  return `${report}\n  ${lineText}\n  ${pad}^`;
}

/**
 * The offset of JSON.parse's first error in `text`: the smallest n such that the first n characters fail
 * before their end. Any shorter prefix is the start of a valid document, so it either parses or fails only
 * at its end (V8 then says "Unexpected end of JSON input" or names position n), which makes the test
 * monotone in n and a binary search exact. The text's length when it fails only at its end.
 */
export function jsonErrorOffset(text: string): number {
  const failsBeforeEnd = (n: number): boolean => {
    try {
      JSON.parse(text.slice(0, n));
      return false;
    } catch (err) {
      const message = (err as Error).message;
      const position = POSITION.exec(message);
      if (position) return Number(position[1]) < n;
      return !message.startsWith('Unexpected end of JSON input');
    }
  };
  if (!failsBeforeEnd(text.length)) return text.length;
  let lo = 0;
  let hi = text.length;
  // failsBeforeEnd(lo) is false, failsBeforeEnd(hi) is true.
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (failsBeforeEnd(mid)) hi = mid;
    else lo = mid;
  }
  return hi - 1;
}

export function printFieldErrors(path: string, errors: FieldError[]): void {
  process.stderr.write(`${path}: ${errors.length} invalid field${errors.length === 1 ? '' : 's'}\n`);
  for (const e of errors) process.stderr.write(`  ${(e.pointer || '/').padEnd(28)} ${e.message}\n`);
}
