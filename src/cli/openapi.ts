/** `resonance openapi`: print the OpenAPI document generated from the zod schemas (npm run openapi). */
import { openApiYaml } from '../http/openapi.js';

export async function openapiCommand(): Promise<number> {
  process.stdout.write(openApiYaml());
  return 0;
}
