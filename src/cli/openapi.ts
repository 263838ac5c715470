/** `resonance openapi`: print the OpenAPI document generated from the zod schemas (npm run openapi). */
import { openApiYaml } from '../http/openapi.js';
import { exitCodeFor, parseCommand } from './args.js';

export const OPENAPI_USAGE = `usage: resonance openapi > openapi.yaml

Prints the OpenAPI 3.1 document of the HTTP API (YAML), generated from the server's schemas; a running
server also serves it at /openapi.yaml, and as HTML at /docs.`;

export async function openapiCommand(args: string[]): Promise<number> {
  try {
    parseCommand({ name: 'openapi', usage: OPENAPI_USAGE, positionals: 0 }, args, {});
  } catch (err) {
    return exitCodeFor(err);
  }
  process.stdout.write(openApiYaml());
  return 0;
}
