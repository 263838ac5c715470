/** `resonance validate CONFIG.json`: the normalized config on stdout, warnings and field errors on stderr. */
import { normalize } from '../model/normalize.js';
import { exitCodeFor, printFieldErrors, readJsonFile } from './input.js';

export async function validateCommand(args: string[]): Promise<number> {
  const path = args[0];
  try {
    const config = await readJsonFile(path);
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
