/** `resonance asyncapi`: print the AsyncAPI document of the realtime protocol (npm run asyncapi). */
import { asyncApiYaml } from '../realtime/asyncapi.js';
import { exitCodeFor, parseCommand } from './args.js';

export const ASYNCAPI_USAGE = `usage: resonance asyncapi > asyncapi.yaml

Prints the AsyncAPI 3.0 document of the realtime WebSocket protocol of live spaces (YAML): the channel
/spaces/{spaceId}, its client and server frames (JSON or MessagePack), authentication and close codes,
generated from the server's schemas. The HTTP API is in openapi.yaml (resonance openapi).`;

export async function asyncapiCommand(args: string[]): Promise<number> {
  try {
    parseCommand({ name: 'asyncapi', usage: ASYNCAPI_USAGE, positionals: 0 }, args, {});
  } catch (err) {
    return exitCodeFor(err);
  }
  process.stdout.write(asyncApiYaml());
  return 0;
}
