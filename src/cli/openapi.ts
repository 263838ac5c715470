/** `resonance openapi`: print the OpenAPI document generated from the zod schemas (npm run openapi). */
import { openApiYaml } from '../http/openapi.js';
import { printDocumentCommand } from './args.js';

export const OPENAPI_USAGE = `usage: resonance openapi > openapi.yaml

Prints the OpenAPI 3.1 document of the HTTP API (YAML), generated from the server's schemas; a running
server also serves it at /openapi.yaml, and as HTML at /docs.`;

export const openapiCommand = printDocumentCommand('openapi', OPENAPI_USAGE, openApiYaml);
