/**
 * The one argument parser of every `resonance` command (node:util parseArgs, strict): `-h`/`--help` for
 * each, unknown names reported with the nearest known one, and the mapping of errors to exit codes
 * (0 ok, 1 failure, 2 invalid input).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Invalid input: printed as one `resonance [COMMAND]: message` line (and whatever follows it), exit 2. */
export class UsageError extends Error {
  constructor(message: string, readonly command?: string) {
    super(message);
  }
}

/** `--help` was asked for: the command's usage goes to stdout, exit 0. */
export class HelpRequested extends Error {
  constructor(readonly usage: string) {
    super('help requested');
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

export interface CommandSpec {
  /** As typed after `resonance` (`run`, `keys`), for messages. */
  name: string;
  usage: string;
  /** The most positional arguments the command takes. */
  positionals: number;
}

const HELP = { help: { type: 'boolean', short: 'h' } } as const;

/**
 * `args` parsed against `options` (plus -h/--help). Throws HelpRequested for --help, a UsageError for an
 * unknown option (with the nearest known one), a missing value or one positional too many.
 */
export function parseCommand<const O extends Options>(spec: CommandSpec, args: string[], options: O) {
  const config = { args, options: { ...options, ...HELP }, allowPositionals: true, strict: true } as const;
  let parsed: ReturnType<typeof parseArgs<typeof config>>;
  try {
    parsed = parseArgs(config);
  } catch (err) {
    throw new UsageError(parseErrorMessage(err, [...Object.keys(options), 'help']) + `; see resonance ${spec.name} --help`, spec.name);
  }
  // (TypeScript cannot resolve the values' type while O is generic; `help` is always among them.)
  if ((parsed.values as { help?: boolean }).help) throw new HelpRequested(spec.usage);
  const extra = parsed.positionals[spec.positionals];
  if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"; see resonance ${spec.name} --help`, spec.name);
  return parsed;
}

function parseErrorMessage(err: unknown, known: string[]): string {
  const e = err as Error & { code?: string };
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    // Node: "Unknown option '--backnd'. To specify a positional argument starting with a '-', ..."
    const option = /'([^']+)'/.exec(e.message)?.[1] ?? e.message;
    const near = option.startsWith('--') ? nearest(option.slice(2), known) : undefined;
    return `unknown option ${option}${near ? ` (did you mean --${near}?)` : ''}`;
  }
  // A missing value ("Option '--port <value>' argument missing") or a value given to a flag: Node says which.
  return e.message;
}

/**
 * The known name nearest to `name`: the only one it is a prefix of, else the one at the smallest edit
 * distance (a transposition counting as one edit) when that is at most a third of its length (at least 1),
 * so `serv` -> `serve` and `backnd` -> `backend`, but `x` suggests nothing.
 */
export function nearest(name: string, known: readonly string[]): string | undefined {
  if (name.length >= 2) {
    const prefixed = known.filter((k) => k.startsWith(name));
    if (prefixed.length === 1) return prefixed[0];
  }
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(name, k);
    if (d < bestDistance && d <= Math.max(1, Math.floor(k.length / 3))) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

/** Optimal string alignment distance: insertions, deletions, substitutions, adjacent transpositions. */
export function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  const at = (i: number, j: number): number => rows[i]![j]!;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, at(i - 2, j - 2) + 1);
      rows[i]![j] = d;
    }
  }
  return at(a.length, b.length);
}

/** The error for a missing or unknown ACTION of `command` (keys, clients, orgs): what is known, and its usage. */
export function unknownAction(command: string, action: string | undefined, known: readonly string[], usage: string): UsageError {
  if (action === undefined) return new UsageError(`missing action (${known.join(', ')})\n\n${usage}`, command);
  const near = nearest(action, known);
  return new UsageError(`unknown action "${action}"${near ? ` (did you mean "${near}"?)` : ''}\n\n${usage}`, command);
}

/** Maps a thrown error to the CLI's exit code; anything but invalid input or a help request is rethrown (exit 1). */
export function exitCodeFor(err: unknown): number {
  if (err instanceof HelpRequested) {
    process.stdout.write(err.usage + '\n');
    return 0;
  }
  if (err instanceof UsageError) {
    process.stderr.write(`resonance${err.command ? ` ${err.command}` : ''}: ${err.message}\n`);
    return 2;
  }
  throw err;
}

/** A command that takes no argument and prints a document generated from the server's schemas (openapi, asyncapi). */
export function printDocumentCommand(name: string, usage: string, render: () => string): (args: string[]) => Promise<number> {
  return async (args) => {
    try {
      parseCommand({ name, usage, positionals: 0 }, args, {});
    } catch (err) {
      return exitCodeFor(err);
    }
    process.stdout.write(render());
    return 0;
  };
}
