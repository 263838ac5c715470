/** `resonance validate CONFIG.json`: the normalized config on stdout, warnings and field errors on stderr. */
import { normalize } from '../model/normalize.js';
import { exitCodeFor, parseCommand } from './args.js';
import { printFieldErrors, readJsonFile } from './input.js';

export const VALIDATE_USAGE = `usage: resonance validate CONFIG.json

Checks an HQE config as the API and \`resonance run\` do, and prints its normalized form (every default
filled in) as JSON on stdout; warnings go to stderr.

exit codes: 0 valid, 2 invalid (each bad field is listed by JSON pointer)`;

export async function validateCommand(args: string[]): Promise<number> {
  try {
    const { positionals } = parseCommand({ name: 'validate', usage: VALIDATE_USAGE, positionals: 1 }, args, {});
    const path = positionals[0];
    const config = await readJsonFile(path, 'validate');
    const result = normalize(config);
    if (!result.ok) {
      printFieldErrors(path!, result.errors);
      return 2;
    }
    for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
    process.stdout.write(JSON.stringify({ ok: true, warnings: result.warnings, normalized: result.normalized }, null, 2) + '\n');
    return 0;
  } catch (err) {
    return exitCodeFor(err);
  }
}
