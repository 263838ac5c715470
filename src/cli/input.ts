/** Reading a config file for the CLI, with errors a person can act on. */
import { readFile } from 'node:fs/promises';
import type { FieldError } from '../model/normalize.js';

export class UsageError extends Error {}

export async function readJsonFile(path: string | undefined): Promise<unknown> {
  if (!path) throw new UsageError('missing CONFIG.json argument');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new UsageError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
}

export function printFieldErrors(path: string, errors: FieldError[]): void {
  process.stderr.write(`${path}: ${errors.length} invalid field${errors.length === 1 ? '' : 's'}\n`);
  for (const e of errors) process.stderr.write(`  ${(e.pointer || '/').padEnd(28)} ${e.message}\n`);
}

/** Map a thrown error to the CLI's exit code. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError) {
    process.stderr.write(`resonance: ${err.message}\n`);
    return 2;
  }
  throw err;
}
