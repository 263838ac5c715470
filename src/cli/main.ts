#!/usr/bin/env node
/** `resonance` command line: run | validate | serve | keys | clients | orgs | openapi | asyncapi. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nearest } from './args.js';

interface Command {
  /** The command and its arguments, as the top-level usage lists it. */
  synopsis: string;
  summary: string;
  /**
   * The command, loaded when it runs: `--version`, `--help` and a mistyped name then answer without
   * loading the server. Each prints its own usage for -h/--help (its module's *_USAGE).
   */
  load: () => Promise<(args: string[]) => Promise<number>>;
}

const COMMANDS: Record<string, Command> = {
  run: { synopsis: 'run CONFIG.json', summary: 'run an HQE config to completion and print the result', load: async () => (await import('./run.js')).runCommand },
  validate: { synopsis: 'validate CONFIG.json', summary: 'check a config and print its normalized form', load: async () => (await import('./validate.js')).validateCommand },
  serve: { synopsis: 'serve', summary: 'start the HTTP service (API, live spaces, demo pages)', load: async () => (await import('./serve.js')).serveCommand },
  keys: { synopsis: 'keys create|list|revoke', summary: 'API keys', load: async () => (await import('./keys.js')).keysCommand },
  clients: { synopsis: 'clients create|list|revoke', summary: 'OAuth2 clients', load: async () => (await import('./keys.js')).clientsCommand },
  orgs: { synopsis: 'orgs quotas|set-quota', summary: "an org's quotas", load: async () => (await import('./orgs.js')).orgsCommand },
  openapi: { synopsis: 'openapi', summary: 'print the OpenAPI document (openapi.yaml)', load: async () => (await import('./openapi.js')).openapiCommand },
  asyncapi: { synopsis: 'asyncapi', summary: 'print the AsyncAPI document of the WebSocket protocol (asyncapi.yaml)', load: async () => (await import('./asyncapi.js')).asyncapiCommand },
};

const USAGE = `usage: resonance <command> [options]

commands:
${Object.values(COMMANDS).map((c) => `  ${c.synopsis.padEnd(28)}${c.summary}`).join('\n')}

  resonance <command> --help  a command's options (or: resonance help <command>)
  resonance --version         the version

exit codes: 0 ok, 1 failure, 2 invalid input (each bad field is listed)`;

/** The version in the package's package.json: the nearest one above this module (src/cli or dist/src/cli). */
function version(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'resonance' && pkg.version) return pkg.version;
    }
    if (dirname(dir) === dir) return 'unknown';
  }
}

/** Own entries only: `resonance constructor` is no command. */
const commandNamed = (name: string): Command | undefined => (Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined);

function unknownCommand(name: string): number {
  const near = nearest(name, Object.keys(COMMANDS));
  process.stderr.write(`resonance: unknown command "${name}"${near ? ` (did you mean "${near}"?)` : ''}; see resonance --help\n`);
  return 2;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(USAGE + '\n');
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const topic = rest[0];
    const help = topic === undefined ? undefined : commandNamed(topic);
    if (name === 'help' && topic !== undefined) return help ? (await help.load())(['--help']) : unknownCommand(topic);
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    process.stdout.write(`resonance ${version()}\n`);
    return 0;
  }
  const command = commandNamed(name);
  if (!command) {
    if (name.startsWith('-')) {
      const near = name.startsWith('--') ? nearest(name.slice(2), ['help', 'version']) : undefined;
      process.stderr.write(`resonance: unknown option ${name}${near ? ` (did you mean --${near}?)` : ''}; a command's options come after it (see resonance --help)\n`);
      return 2;
    }
    return unknownCommand(name);
  }
  return (await command.load())(rest);
}

// `resonance openapi | head`: a reader that stops early is no failure of the command (Node would throw EPIPE).
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`resonance: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
