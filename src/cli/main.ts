#!/usr/bin/env node
/** `resonance` command line: run | validate (serve, keys and bench join as the service grows). */
import { runCommand } from './run.js';
import { validateCommand } from './validate.js';

const USAGE = `usage: resonance <command> [options]

commands:
  run CONFIG.json       run an HQE config to completion and print the result
      --backend auto|cpu|webgpu   engine (default: RESONANCE_BACKEND or auto)
      --precision f64|f32         CPU engine precision (default f64)
      --json                      print the full result as JSON on stdout
      --snapshots FILE.jsonl      write every snapshot as one JSON line
  validate CONFIG.json  check a config and print its normalized form

exit codes: 0 ok, 1 failure, 2 invalid input (each bad field is listed)`;

const commands: Record<string, (args: string[]) => Promise<number>> = {
  run: runCommand,
  validate: validateCommand,
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
