/** `resonance asyncapi`: print the AsyncAPI document of the realtime protocol (npm run asyncapi). */
import { asyncApiYaml } from '../realtime/asyncapi.js';
import { printDocumentCommand } from './args.js';

export const ASYNCAPI_USAGE = `usage: resonance asyncapi > asyncapi.yaml

Prints the AsyncAPI 3.0 document of the realtime WebSocket protocol of live spaces (YAML): the channel
/spaces/{spaceId}, its client and server frames (JSON or MessagePack), authentication and close codes,
generated from the server's schemas. The HTTP API is in openapi.yaml (resonance openapi).`;

export const asyncapiCommand = printDocumentCommand('asyncapi', ASYNCAPI_USAGE, asyncApiYaml);
