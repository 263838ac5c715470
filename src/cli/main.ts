#!/usr/bin/env node
/** `resonance` command line: serve | run | validate | keys | clients. */
import { runCommand } from './run.js';
import { validateCommand } from './validate.js';
import { serveCommand } from './serve.js';
import { openapiCommand } from './openapi.js';
import { clientsCommand, keysCommand } from './keys.js';
import { orgsCommand } from './orgs.js';

const USAGE = `usage: resonance <command> [options]

commands:
  run CONFIG.json       run an HQE config to completion and print the result
      --backend auto|cpu|webgpu   engine (default: RESONANCE_BACKEND or auto)
      --precision f64|f32         CPU engine precision (default f64)
      --json                      print the full result as JSON on stdout
      --snapshots FILE.jsonl      write every snapshot as one JSON line
  validate CONFIG.json  check a config and print its normalized form
  serve                 start the HTTP service (see README for RESONANCE_* settings)
      --port N  --host ADDR  --data DIR  --backend auto|cpu|webgpu
  keys create|list|revoke   API keys (resonance keys --help)
  clients create|list|revoke OAuth2 clients (resonance clients --help)
  orgs quotas|set-quota     per-org quotas (resonance orgs --help)
  openapi               print the OpenAPI document (openapi.yaml)

exit codes: 0 ok, 1 failure, 2 invalid input (each bad field is listed)`;

const commands: Record<string, (args: string[]) => Promise<number>> = {
  run: runCommand,
  validate: validateCommand,
  serve: serveCommand,
  keys: keysCommand,
  clients: clientsCommand,
  orgs: orgsCommand,
  openapi: openapiCommand,
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE + '\n');
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`resonance: unknown command "${name}"\n\n${USAGE}\n`);
    return 2;
  }
  return command(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`resonance: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
