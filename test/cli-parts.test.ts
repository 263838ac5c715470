/** Parts of the CLI that a child process cannot show deterministically: the progress bar, name suggestions, JSON error offsets. */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { editDistance, nearest } from '../src/cli/args.js';
import { jsonErrorOffset, jsonErrorReport } from '../src/cli/input.js';
import { progressReporter } from '../src/cli/run.js';

/** A terminal that keeps what is written to it. */
class FakeTerminal extends Writable {
  isTTY = true;
  columns = 120;
  written = '';
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.written += chunk.toString();
    callback();
  }
  /** Each redraw of the bar as the terminal shows it (cli-progress starts each at column 1). */
  frames(): string[] {
    return this.written.split('\x1b[1G').slice(1).map((f) => f.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, '').trim());
  }
}

describe('progress bar of resonance run', () => {
  it('ends at 100% on the final step when the run converges before its step limit', () => {
    const terminal = new FakeTerminal();
    let now = 0;
    const progress = progressReporter(terminal, () => now);
    progress.update({ step: 40, maxSteps: 1000, restart: 0 });
    expect(terminal.written).toBe(''); // nothing during the first second
    now = 1500;
    progress.update({ step: 200, maxSteps: 1000, restart: 0 });
    now = 1600;
    progress.update({ step: 300, maxSteps: 1000, restart: 0 }); // converged here
    progress.finish();
    const frames = terminal.frames();
    expect(frames[0]).toMatch(/20% \| step 200\/1000/);
    expect(frames.at(-1)).toMatch(/100% \| step 300\/300 \| restart 0/);
  });

  it('shows nothing for a run under a second, and stays where it was when the run is abandoned', () => {
    const quick = new FakeTerminal();
    let now = 0;
    const a = progressReporter(quick, () => now);
    now = 900;
    a.update({ step: 64, maxSteps: 64, restart: 0 });
    a.finish();
    expect(quick.written).toBe('');

    const failed = new FakeTerminal();
    const b = progressReporter(failed, () => now);
    now = 3000;
    b.update({ step: 250, maxSteps: 1000, restart: 1 });
    b.stop();
    expect(failed.frames().at(-1)).toMatch(/25% \| step 250\/1000 \| restart 1/);
  });

  it('writes a line every 2 s instead of a bar when stderr is not a terminal', () => {
    const pipe = new FakeTerminal();
    pipe.isTTY = false;
    let now = 0;
    const progress = progressReporter(pipe, () => now);
    for (now = 1000; now <= 6000; now += 500) progress.update({ step: now / 10, maxSteps: 1000, restart: 0 });
    progress.finish();
    expect(pipe.written).toBe('step 100/1000 (restart 0)\nstep 350/1000 (restart 0)\nstep 600/1000 (restart 0)\n');
  });
});

describe('suggestions', () => {
  it('counts insertions, deletions, substitutions and transpositions as one edit each', () => {
    expect(editDistance('serve', 'serve')).toBe(0);
    expect(editDistance('serv', 'serve')).toBe(1);
    expect(editDistance('sevre', 'serve')).toBe(1);
    expect(editDistance('backnd', 'backend')).toBe(1);
    expect(editDistance('run', 'orgs')).toBe(3); // o inserted, u -> g, n -> s
    expect(editDistance('', 'keys')).toBe(4);
  });

  it('suggests a close name or a unique prefix, and nothing far', () => {
    const commands = ['run', 'validate', 'serve', 'keys', 'clients', 'orgs', 'openapi'];
    expect(nearest('serv', commands)).toBe('serve');
    expect(nearest('vaildate', commands)).toBe('validate');
    expect(nearest('key', commands)).toBe('keys');
    expect(nearest('val', commands)).toBe('validate');
    expect(nearest('rn', commands)).toBe('run');
    expect(nearest('x', commands)).toBeUndefined();
    expect(nearest('deploy', commands)).toBeUndefined();
    expect(nearest('snap', ['backend', 'precision', 'json', 'snapshots', 'help'])).toBe('snapshots');
  });
});

describe('JSON error positions', () => {
  const offsetOf = (text: string): number => {
    try {
      JSON.parse(text);
    } catch {
      return jsonErrorOffset(text);
    }
    throw new Error('valid JSON');
  };

  it('finds where V8 stopped when its message names no position', () => {
    expect(offsetOf('{"a": }')).toBe(6);
    expect(offsetOf('{"a": tru}')).toBe(9);
    expect(offsetOf('{"a": [1, 2, x]}')).toBe(13);
    expect(offsetOf('é')).toBe(0);
    expect(offsetOf('{"a": 1')).toBe(7); // the end
    expect(offsetOf('')).toBe(0);
  });

  it('agrees with V8 where V8 names the position', () => {
    for (const text of ['{"a": 1 "b": 2}', '[1, 2] x', '{"a": 1,}', '{"a": "x\ny"}', '{"a": 01}', '{"a":\n 1\n "b": 2}']) {
      let position = -1;
      try {
        JSON.parse(text);
      } catch (err) {
        position = Number(/at position (\d+)/.exec((err as Error).message)![1]);
      }
      expect({ text, offset: jsonErrorOffset(text) }).toEqual({ text, offset: position });
    }
  });

  it('reports lines and columns from 1, columns in characters, with the line and a caret', () => {
    const text = '{\n  "näme": 1\n\t"x": 2}';
    let message = '';
    try {
      JSON.parse(text);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(jsonErrorReport('c.json', text, message)).toBe(`c.json:3:2: Expected ',' or '}' after property value\n  \t"x": 2}\n  \t^`);
    expect(jsonErrorReport('e.json', '{"a":\n', 'Unexpected end of JSON input')).toBe('e.json:2:1: Unexpected end of JSON input');
  });
});
