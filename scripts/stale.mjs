/**
 * Whether a build step's outputs are current, by modification times: `npm start` builds with
 * `--if-stale` and skips a step whose outputs are all newer than all its inputs. `npm run build` (and so
 * `npm test` and CI) never skips.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** True when every output exists and none is older than the newest input (a missing input counts as changed). */
export async function upToDate(outputs, inputs) {
  const mtime = async (file) => (await stat(file).catch(() => null))?.mtimeMs ?? null;
  let oldestOutput = Infinity;
  for (const file of outputs) {
    const t = await mtime(file);
    if (t === null) return false;
    oldestOutput = Math.min(oldestOutput, t);
  }
  for (const file of inputs) {
    const t = await mtime(file);
    if (t === null || t > oldestOutput) return false;
  }
  return outputs.length > 0;
}

/** Every file under `dir` (recursively). */
export async function filesUnder(dir) {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath ?? e.path, e.name));
}
