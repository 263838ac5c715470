/** `resonance serve`: the HTTP service, until SIGINT/SIGTERM (graceful) . */
import { parseArgs } from 'node:util';
import { configFromEnv, type ServerConfig } from '../http/config.js';
import { startServer } from '../server.js';
import type { BackendChoice } from '../engine/types.js';
import { exitCodeFor, UsageError } from './input.js';

export async function serveCommand(args: string[]): Promise<number> {
  let config: ServerConfig;
  try {
    const { values } = parseArgs({
      args,
      options: { port: { type: 'string' }, host: { type: 'string' }, data: { type: 'string' }, backend: { type: 'string' } },
    });
    const overrides: Partial<ServerConfig> = {};
    if (values.port !== undefined) {
      const port = Number(values.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be 0..65535 (got "${values.port}")`);
      overrides.port = port;
    }
    if (values.host !== undefined) overrides.host = values.host;
    if (values.data !== undefined) overrides.dataDir = values.data;
    if (values.backend !== undefined) {
      if (!['auto', 'cpu', 'webgpu'].includes(values.backend)) throw new UsageError(`--backend must be auto, cpu or webgpu`);
      overrides.backend = values.backend as BackendChoice;
    }
    config = configFromEnv(process.env, overrides);
  } catch (err) {
    if (err instanceof TypeError || (err instanceof Error && !(err instanceof UsageError))) return exitCodeFor(new UsageError(err.message));
    return exitCodeFor(err);
  }
  const server = await startServer(config);
  // Parseable by scripts and tests that start the server on port 0.
  process.stdout.write(`listening on ${server.url}\n`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      server.logger.info({ signal }, 'shutting down');
      server.close().then(resolve, (err: unknown) => {
        server.logger.error({ err }, 'shutdown failed');
        resolve();
      });
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  return 0;
}
