/**
 * The demo pages in a real browser: Debian's Chromium (/usr/bin/chromium, installed by .ci/run) driven by
 * playwright-core, headless, with --enable-unsafe-webgpu for its SwiftShader WebGPU adapter (docs/web.md,
 * "Engine in the browser"), against a real server (test/helpers/server.ts).
 *
 * - The playground runs examples/hqe.json on WebGPU (a page that falls back to the CPU engine fails
 *   here: no adapter is a failure, never a skip) and its final metrics match the server's POST /v1/hqe/run
 *   of the same config within the parity bar (docs/model.md section 7: 1e-4 per metric).
 * - Two space viewers join one space; one shifts a phase with the keyboard and then by dragging, the other
 *   sees each change (version readout, the prime's phase, the log).
 * - Both pages at 1280x800 and at a phone's width: no horizontal overflow, nothing fetched from another
 *   origin, no script errors; screenshots in test-artifacts/.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_KEY, startServer, type TestServer } from './helpers/server.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const ARTIFACTS = join(ROOT, 'test-artifacts');
const CHROMIUM = process.env.RESONANCE_CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu'];
const METRICS = ['resonanceStrength', 'coherence', 'entropy', 'locality', 'dominance'] as const;
const PARITY_BAR = 1e-4;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let server: TestServer;
let browser: Browser;
const contexts: BrowserContext[] = [];

interface Watched {
  page: Page;
  /** Requests to anything but the server's origin (data: and blob: URLs aside). */
  foreign: string[];
  errors: string[];
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the browser tests need Debian's chromium (apt-get install -y chromium; .ci/run does this)`);
  }
  await mkdir(ARTIFACTS, { recursive: true });
  server = await startServer();
  // launch() starts Chromium on a fresh temporary profile (user data dir) and removes it on close.
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
}, 60_000);

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await server?.stop();
});

/**
 * A page in its own context (its own storage: another user) at `viewport`, watched for foreign requests and
 * errors; `init` runs in the page before its scripts.
 */
async function open(path: string, viewport: { width: number; height: number }, app = true, base = server.url, init?: () => void): Promise<Watched> {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  contexts.push(context);
  const page = await context.newPage();
  if (init) await page.addInitScript(init);
  const origin = new URL(base).origin;
  const w: Watched = { page, foreign: [], errors: [] };
  page.on('request', (req) => {
    const url = req.url();
    if (!url.startsWith(origin) && !/^(data|blob):/.test(url) && !url.startsWith(origin.replace(/^http/, 'ws'))) w.foreign.push(url);
  });
  page.on('pageerror', (err) => w.errors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') w.errors.push(msg.text());
  });
  await page.goto(base + path);
  if (!app) return w;
  await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
  await page.fill('#api-key', DEV_KEY);
  await page.dispatchEvent('#api-key', 'change');
  return w;
}

async function noHorizontalOverflow(page: Page): Promise<void> {
  const { scroll, client } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
  expect(scroll, `page is ${scroll}px wide in a ${client}px viewport`).toBeLessThanOrEqual(client + 1);
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Form controls without a label (every one needs a visible label or an aria-label). */
async function unlabelled(page: Page): Promise<string[]> {
  return page.$$eval('input, select, textarea, button', (els) =>
    els.filter((e) => !((e as HTMLInputElement).labels?.length || e.getAttribute('aria-label') || (e.tagName === 'BUTTON' && e.textContent?.trim()))).map((e) => e.outerHTML.slice(0, 80)),
  );
}

function clean(w: Watched): void {
  expect(w.foreign, 'requests to other origins').toEqual([]);
  expect(w.errors, 'script errors').toEqual([]);
}

async function exampleConfig(): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(ROOT, 'examples', 'hqe.json'), 'utf8')) as Record<string, unknown>;
}

/** Runs the page's config in the browser; returns the engine readout and the final metrics from the table. */
async function runInBrowser(page: Page): Promise<{ backend: string; adapter: string; metrics: Record<string, number> }> {
  await page.click('#run-browser');
  await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 60_000 });
  const state = await page.getAttribute('#status', 'data-state');
  expect(state, `browser run: ${await page.textContent('#status')}`).toBe('done');
  const backend = (await page.getAttribute('#engine', 'data-backend')) ?? '';
  const adapter = (await page.getAttribute('#engine', 'data-adapter')) ?? '';
  const metrics: Record<string, number> = {};
  for (const m of METRICS) metrics[m] = Number(await page.getAttribute(`#compare td[data-side="browser"][data-metric="${m}"]`, 'data-value'));
  return { backend, adapter, metrics };
}

describe('HQE playground', () => {
  it('runs the HQE example on WebGPU (SwiftShader) and matches the server within the parity bar', async () => {
    const w = await open('/demo/playground', DESKTOP);
    const { page } = w;
    const config = await exampleConfig();
    await page.fill('#config-json', JSON.stringify(config, null, 2));
    await expect.poll(() => page.textContent('#validation')).toMatch(/^Valid: k = 4 primes/);
    // The form follows the JSON editor.
    expect(await page.inputValue('#f-primes')).toBe('2, 3, 5, 7');
    expect(await page.inputValue('#f-seed')).toBe('42');

    const run = await runInBrowser(page);
    const engineText = await page.textContent('#engine');
    expect(run.backend, `the page ran on "${engineText}": Chromium offered no WebGPU adapter (is --enable-unsafe-webgpu honoured?)`).toBe('webgpu');
    expect(run.adapter).toMatch(/swiftshader/i);
    expect(engineText).toMatch(/WebGPU/);

    // The server's run of the same config (CPU engine, float64), straight from the REST API.
    const res = await fetch(`${server.url}/v1/hqe/run`, {
      method: 'POST',
      headers: { 'X-Api-Key': DEV_KEY, 'content-type': 'application/json' },
      body: JSON.stringify(config),
    });
    expect(res.status).toBe(200);
    const serverRun = (await res.json()) as { status: string; steps: number; finalMetrics: Record<string, number> };
    for (const m of METRICS) {
      expect(Math.abs(run.metrics[m]! - serverRun.finalMetrics[m]!), `${m}: browser ${run.metrics[m]} vs server ${serverRun.finalMetrics[m]}`).toBeLessThanOrEqual(PARITY_BAR);
    }
    const summary = await page.textContent('#summary');
    expect(summary).toContain(`${serverRun.status} at step ${serverRun.steps}`);

    // The page's own "Run on server" (through the SDK) fills the comparison.
    await page.click('#run-server');
    await page.waitForSelector('#status[data-state="server-done"], #status[data-state="error"]', { timeout: 60_000 });
    expect(await page.getAttribute('#status', 'data-state'), (await page.textContent('#status')) ?? '').toBe('server-done');
    const maxDiff = Number(await page.getAttribute('#compare', 'data-max-diff'));
    expect(maxDiff).toBeLessThanOrEqual(PARITY_BAR);
    expect(await page.textContent('#max-diff')).toMatch(/within the parity bar/);

    // Plots and the phase circle are drawn: five charts with data, four markers at the final step.
    expect(await page.locator('#charts canvas').count()).toBe(5);
    // Each axis stays within [0, 1], the metrics' range; the resonance chart carries the config's target (0.8).
    for (const m of METRICS) {
      const [lo, hi] = await page.$eval(`.chart[data-metric="${m}"] canvas`, (c) => [Number((c as HTMLCanvasElement).dataset.yMin), Number((c as HTMLCanvasElement).dataset.yMax)]);
      expect(lo, m).toBeGreaterThanOrEqual(0);
      expect(hi, m).toBeLessThanOrEqual(1);
    }
    expect(await page.getAttribute('.chart[data-metric="resonanceStrength"] canvas', 'data-target')).toBe('0.8');
    expect(await page.getAttribute('.chart[data-metric="coherence"] canvas', 'data-target')).toBeNull();
    expect(await page.getAttribute('.chart[data-metric="resonanceStrength"] .value', 'data-value')).not.toBe('');
    expect(await page.locator('#circle .marker').count()).toBe(4);
    expect(Number(await page.getAttribute('#circle', 'data-step'))).toBe(serverRun.steps);
    await noHorizontalOverflow(page);
    await shot(page, 'playground-1280x800');
    clean(w);
  });
});

describe('HQE playground on the CPU engine', () => {
  it('runs the HQE example on the WebAssembly dense pass (cross-origin isolated) and agrees with the server to float64 rounding', async () => {
    const w = await open('/demo/playground', DESKTOP);
    const { page } = w;
    // COOP + COEP make the page cross-origin isolated: the engine's shared WebAssembly memory needs it.
    expect(await page.evaluate(() => globalThis.crossOriginIsolated)).toBe(true);
    const config = await exampleConfig();
    await page.fill('#config-json', JSON.stringify(config, null, 2));
    await expect.poll(() => page.textContent('#validation')).toMatch(/^Valid: k = 4 primes/);
    await page.selectOption('#engine-choice', 'cpu');
    const run = await runInBrowser(page);
    expect(run.backend).toBe('cpu');
    expect(run.adapter).toMatch(/WebAssembly (relaxed-)?simd, the page thread/);

    const res = await fetch(`${server.url}/v1/hqe/run`, {
      method: 'POST',
      headers: { 'X-Api-Key': DEV_KEY, 'content-type': 'application/json' },
      body: JSON.stringify(config),
    });
    const serverRun = (await res.json()) as { status: string; steps: number; finalMetrics: Record<string, number> };
    // Both float64; the dense sums differ only in their order (vector lanes against the server's pass).
    for (const m of METRICS) expect(Math.abs(run.metrics[m]! - serverRun.finalMetrics[m]!), m).toBeLessThanOrEqual(1e-9);
    expect(await page.textContent('#summary')).toContain(`${serverRun.status} at step ${serverRun.steps}`);

    // A server run of an edited config is shown, never compared with the browser's run of the old one.
    const runOnServer = async (): Promise<void> => {
      await page.click('#run-server');
      await page.waitForSelector('#status[data-state="server-done"], #status[data-state="error"]', { timeout: 60_000 });
      expect(await page.getAttribute('#status', 'data-state'), (await page.textContent('#status')) ?? '').toBe('server-done');
    };
    await page.fill('#config-json', JSON.stringify({ ...config, schedule: { steps: 64, dt: 0.1 } }, null, 2));
    await expect.poll(() => page.textContent('#validation')).toMatch(/^Valid: k = 4 primes/);
    await runOnServer();
    expect(await page.textContent('#max-diff')).toMatch(/^not compared: the browser and the server ran different configurations/);
    expect(await page.getAttribute('#compare', 'data-max-diff')).toBeNull();
    expect(await page.textContent('#compare')).not.toMatch(/outside the parity bar/);
    // Both runs of this config: compared again.
    await runInBrowser(page);
    expect(await page.textContent('#max-diff')).toMatch(/within the parity bar/);
    clean(w);
  });
});

/** Records every text drawn on a chart's canvas, by metric, in window.chartTexts (an init script: runs before the page's). */
function recordChartTexts(): void {
  const texts: Record<string, string[]> = {};
  (window as unknown as { chartTexts: Record<string, string[]> }).chartTexts = texts;
  const fill = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (this: CanvasRenderingContext2D, text: string, x: number, y: number, maxWidth?: number): void {
    const metric = this.canvas.closest('.chart')?.getAttribute('data-metric') ?? '';
    (texts[metric] ??= []).push(text);
    if (maxWidth === undefined) fill.call(this, text, x, y);
    else fill.call(this, text, x, y, maxWidth);
  };
}

interface LabelBox {
  text: string;
  left: number;
  top: number;
  right: number;
  bottom: number;
}

/** The phase circle's visible labels (their on-screen boxes) and the circle's own box. */
async function circleLabels(page: Page): Promise<{ labels: LabelBox[]; svg: LabelBox }> {
  return page.evaluate(() => {
    const box = (e: Element): { text: string; left: number; top: number; right: number; bottom: number } => {
      const r = e.getBoundingClientRect();
      return { text: e.textContent ?? '', left: r.left, top: r.top, right: r.right, bottom: r.bottom };
    };
    const labels = Array.from(document.querySelectorAll('#circle .label')).filter((e) => getComputedStyle(e).visibility !== 'hidden' && e.getBoundingClientRect().width > 0);
    return { labels: labels.map(box), svg: box(document.querySelector('#circle svg')!) };
  });
}

/** No two labels overlap, every prime is named exactly once, and every label lies within the circle's picture. */
function expectReadableLabels(labels: LabelBox[], svg: LabelBox, primes: number[]): void {
  for (let i = 0; i < labels.length; i++) {
    for (let j = i + 1; j < labels.length; j++) {
      const a = labels[i]!;
      const b = labels[j]!;
      const apart = a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top;
      expect(apart, `labels "${a.text}" and "${b.text}" overlap: ${JSON.stringify([a, b])}`).toBe(true);
    }
  }
  const named = labels.flatMap((l) => l.text.match(/\d+/g) ?? []).map(Number).sort((x, y) => x - y);
  expect(named).toEqual([...primes].sort((x, y) => x - y));
  for (const l of labels) {
    expect(l.left >= svg.left - 0.5 && l.right <= svg.right + 0.5 && l.top >= svg.top - 0.5 && l.bottom <= svg.bottom + 0.5, `label "${l.text}" is cut off`).toBe(true);
  }
}

describe('HQE playground explains itself', () => {
  it('says what every field of the form does, with its unit or range', async () => {
    const w = await open('/demo/playground', DESKTOP);
    const fields = await w.page.$$eval('#fields input, #fields select', (els) => els.map((e) => ({
      id: e.id,
      help: document.getElementById(e.getAttribute('aria-describedby') ?? '')?.textContent ?? '',
      visible: (document.getElementById(e.getAttribute('aria-describedby') ?? '')?.getBoundingClientRect().height ?? 0) > 0,
    })));
    expect(fields.length).toBeGreaterThanOrEqual(22);
    for (const f of fields) {
      expect(f.help.length, `${f.id} has no help`).toBeGreaterThan(20);
      expect(f.visible, `${f.id}'s help is not shown`).toBe(true);
    }
    const help = Object.fromEntries(fields.map((f) => [f.id, f.help]));
    expect(help['f-dt']).toMatch(/integration step, in model time units/);
    expect(help['f-steps']).toMatch(/integer ≥ 0/);
    expect(help['f-plateauT']).toMatch(/integer ≥ 1/);
    expect(help['f-metrics']).toMatch(/steps between metric records/);
    expect(help['f-lambda']).toMatch(/per time unit/);
    expect(help['f-gamma0']).toMatch(/≥ 0/);
    expect(help['f-temp']).toMatch(/0 = none/);
    expect(help['f-beta']).toMatch(/0 < beta ≤ 1/);
    expect(help['f-locality']).toMatch(/0–1/);
    expect(help['f-target']).toMatch(/0–1/);
    expect(help['f-operator']).toMatch(/R_q coherence/);
    expect(help['f-mixer']).toMatch(/local .*flow .*learned/);
    expect(help['f-norm']).toMatch(/L2 .*L1/);
    clean(w);

    // The space viewer's create form too, and the settings it adds without a field.
    const s = await open('/demo/space', DESKTOP);
    for (const id of ['c-name', 'c-primes', 'c-hz']) {
      const text = await s.page.$eval(`#${id}`, (e) => document.getElementById(e.getAttribute('aria-describedby') ?? '')?.textContent ?? '');
      expect(text.length, id).toBeGreaterThan(20);
    }
    expect(await s.page.$eval('#c-hz', (e) => document.getElementById(e.getAttribute('aria-describedby')!)!.textContent)).toMatch(/ticks per second, 1–60/);
    expect(await s.page.textContent('#c-defaults')).toMatch(/r = 0\.85.*lambda = 0\.03.*96%/);
    clean(s);
  });

  it('names each chart\'s y axis with its metric and range, ticks at 0, 0.5 and 1', async () => {
    const w = await open('/demo/playground', DESKTOP, true, server.url, recordChartTexts);
    const { page } = w;
    await page.fill('#config-json', JSON.stringify(await exampleConfig(), null, 2));
    await runInBrowser(page);
    const texts = await page.evaluate(() => (window as unknown as { chartTexts: Record<string, string[]> }).chartTexts);
    const axis: Record<string, string> = { resonanceStrength: 'r (0–1)', coherence: 'C (0–1)', entropy: 'E (0–1)', locality: 'L (0–1)', dominance: 'max P (0–1)' };
    for (const m of METRICS) {
      const drawn = new Set(texts[m] ?? []);
      for (const t of [axis[m]!, '0', '0.5', '1', 'step']) expect(drawn.has(t), `${m} chart draws "${t}" (drew ${[...drawn].join(' | ')})`).toBe(true);
      // The whole range, always: a chart of values near 1 is not zoomed in on them.
      expect(await page.$eval(`.chart[data-metric="${m}"] canvas`, (c) => [(c as HTMLCanvasElement).dataset.yMin, (c as HTMLCanvasElement).dataset.yMax])).toEqual(['0', '1']);
      // The caption names the symbol on the axis; the accessible name says the range.
      expect(await page.textContent(`.chart[data-metric="${m}"] figcaption`)).toContain(`(${axis[m]!.replace(' (0–1)', '')})`);
      expect(await page.getAttribute(`.chart[data-metric="${m}"] canvas`, 'aria-label')).toMatch(/dimensionless, 0 to 1/);
    }
    clean(w);
  });

  it('fills the form from named presets that all validate; Quick lock runs to a lock with readable labels', async () => {
    const w = await open('/demo/playground', DESKTOP);
    const { page } = w;
    // The page opens on the example, which is a preset.
    expect(await page.inputValue('#preset')).toBe('example');
    const presets = (await page.$$eval('#preset option', (os) => os.map((o) => ({ value: (o as HTMLOptionElement).value, name: o.textContent ?? '' })))).filter((o) => o.value !== 'custom');
    expect(presets.length).toBeGreaterThanOrEqual(3);
    expect(presets.length).toBeLessThanOrEqual(5);
    expect(presets.map((p) => p.name).join(' | ')).toMatch(/Quick lock \(8 primes\).*Noisy search \(64 primes, temperature\).*Big basis \(512 primes\).*Target coherence \(R_q\)/);
    const descriptions = new Set<string>();
    for (const p of presets) {
      await page.selectOption('#preset', p.value);
      await expect.poll(() => page.textContent('#validation'), { message: p.name }).toMatch(/^Valid: k = \d+ primes/);
      expect(await page.isEnabled('#run-browser'), p.name).toBe(true);
      expect(await page.locator('[aria-invalid="true"]').count(), p.name).toBe(0);
      // Form and JSON hold the preset.
      const json = JSON.parse(await page.inputValue('#config-json')) as { primes: number[]; seed: number };
      expect(await page.inputValue('#f-primes')).toBe(json.primes.join(', '));
      expect(await page.inputValue('#f-seed')).toBe(String(json.seed));
      expect(await page.textContent('#validation')).toContain(`k = ${json.primes.length} primes`);
      const description = (await page.textContent('#preset-desc')) ?? '';
      expect(description.length, p.name).toBeGreaterThan(40);
      expect(description, `${p.name}: one sentence`).toMatch(/^[^.]*(\.[^\s.][^.]*)*\.$/);
      descriptions.add(description);
      // The server accepts it as well.
      const res = await fetch(`${server.url}/v1/hqe/validate`, { method: 'POST', headers: { 'X-Api-Key': DEV_KEY, 'content-type': 'application/json' }, body: JSON.stringify(json) });
      expect(res.status, `${p.name}: ${await res.clone().text()}`).toBe(200);
    }
    expect(descriptions.size).toBe(presets.length);
    expect((JSON.parse(await page.inputValue('#config-json')) as { primes: number[] }).primes).toHaveLength(16);
    expect(await page.getAttribute('.chart[data-metric="coherence"] canvas', 'data-target')).toBe('0.9');

    // An edit makes it the user's own configuration.
    await page.selectOption('#preset', 'quick-lock');
    await page.fill('#f-steps', '150');
    expect(await page.inputValue('#preset')).toBe('custom');
    expect(await page.textContent('#preset-desc')).toMatch(/^Your own configuration/);

    // Quick lock runs to its end in the browser; the locked primes pile up at the mean phase, their labels do not.
    await page.selectOption('#preset', 'quick-lock');
    const run = await runInBrowser(page);
    expect(run.backend).toBe('webgpu');
    expect(await page.textContent('#status')).toMatch(/^Browser run converged at step \d+/);
    expect(run.metrics.resonanceStrength).toBeGreaterThan(0.93);
    const { labels, svg } = await circleLabels(page);
    expectReadableLabels(labels, svg, [2, 3, 5, 7, 11, 13, 17, 19]);
    expect(labels.length, 'locked primes share a label').toBeLessThan(8);
    await noHorizontalOverflow(page);
    clean(w);
  });
});

/** Creates a space on `base` with the dev key (201 expected) and returns its id. */
async function createSpace(config: Record<string, unknown>, base = server.url): Promise<string> {
  const res = await fetch(`${base}/v1/spaces`, {
    method: 'POST',
    headers: { 'X-Api-Key': DEV_KEY, 'content-type': 'application/json' },
    body: JSON.stringify(config),
  });
  expect(res.status, await res.clone().text()).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

/**
 * A space whose primes all turn as one (no coupling, noise or entropy pull; frequencyScale 0 makes every
 * natural frequency 1, so -0.1 rad a tick at dt 0.1) from `phases`, joined in the viewer at 1280x800 and
 * shown with every marker.
 */
async function joinSpaceTurningAsOne(name: string, primes: number[], phases: number[]): Promise<Watched> {
  const spaceId = await createSpace({
    name, basis: { primes }, phases: { golden: false, silver: false, custom: phases },
    operators: { mixer: { gamma0: 0, gammaGrowth: 0, gammaMax: 0, temperature0: 0 }, frequencyScale: 0 }, entropy: { lambda: 0 }, policy: { publishHz: 2 },
  });
  const w = await open('/demo/space', DESKTOP);
  await w.page.fill('#j-id', spaceId);
  await w.page.click('#join');
  await w.page.waitForSelector(`#circle .marker[data-index="${primes.length - 1}"][data-phase]`, { timeout: 15_000 });
  return w;
}

const versionOf = async (page: Page): Promise<number> => Number(await page.getAttribute('#version', 'data-version'));
const wrapPi = (x: number): number => {
  const y = (((x + Math.PI) % (2 * Math.PI)) + 2 * Math.PI) % (2 * Math.PI);
  return y - Math.PI;
};

describe('space viewer', () => {
  it('two viewers: one shifts a phase by keyboard and by dragging, the other sees both', async () => {
    // A quiet space (no coupling, no noise): between two reads a prime's phase relative to another moves
    // only by their natural frequencies, -dt s ln(p_i/p_j) per tick, so a shift stands out exactly.
    const spaceId = await createSpace({
      name: 'browser-test',
      basis: { primes: [2, 3, 5, 7, 11, 13] },
      phases: { golden: true, silver: true },
      operators: { mixer: { gamma0: 0, gammaGrowth: 0, gammaMax: 0, temperature0: 0 } },
      policy: { publishHz: 10 },
    });

    const a = await open('/demo/space', DESKTOP);
    const b = await open('/demo/space', DESKTOP);
    for (const [w, name] of [[a, 'alice'], [b, 'bob']] as const) {
      await w.page.fill('#display-name', name);
      await w.page.fill('#j-id', spaceId);
      await w.page.click('#join');
      await w.page.waitForSelector('body[data-joined="true"]', { timeout: 15_000 });
    }
    for (const w of [a, b]) {
      await w.page.waitForSelector('#circle .marker[data-index="5"][data-phase]', { timeout: 10_000 });
      await w.page.waitForFunction(() => document.querySelector('.chart[data-metric="coherence"] .value')?.getAttribute('data-value'), undefined, { timeout: 10_000 });
    }

    // Keyboard: A focuses prime 5 (index 2) and presses Page Up (+90 degrees).
    const view = async (): Promise<{ rel: number; t: number }> =>
      b.page.evaluate(() => {
        const phase = (i: number): number => Number(document.querySelector(`#circle .marker[data-index="${i}"]`)?.getAttribute('data-phase'));
        return { rel: phase(2) - phase(3), t: Number(document.getElementById('circle')?.dataset.t) };
      });
    const v0 = await versionOf(b.page);
    const before = await view();
    await a.page.focus('#circle .marker[data-index="2"]');
    await a.page.keyboard.press('PageUp');
    await a.page.waitForFunction(() => /accepted as version/.test(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 10_000 });
    const v1 = await versionOf(a.page);
    expect(v1).toBeGreaterThan(v0);
    await b.page.waitForFunction((v) => Number(document.getElementById('circle')?.dataset.version) >= v, v1, { timeout: 10_000 });
    expect(await versionOf(b.page)).toBeGreaterThanOrEqual(v1);
    const after = await view();
    // The relative phase of primes 5 and 7 moved by the shift, plus the free rotation of the ticks between.
    const drift = 0.1 * 0.1 * Math.log(7 / 5) * Math.abs(after.t - before.t);
    expect(Math.abs(wrapPi(after.rel - before.rel - Math.PI / 2)), `relative phase ${before.rel} (t ${before.t}) -> ${after.rel} (t ${after.t})`).toBeLessThan(drift + 1e-3);
    await expect.poll(() => b.page.textContent('#log')).toMatch(/alice shift prime 5 by \+90\.0°/);
    expect(await a.page.textContent('#latency')).toMatch(/last \d+ ms/);

    // Pointer: A drags prime 2 (index 0) a sixth of a turn clockwise around the circle.
    const centre = await a.page.locator('#circle svg').boundingBox();
    const dot = await a.page.locator('#circle .marker[data-index="0"] .dot').boundingBox();
    expect(centre && dot).toBeTruthy();
    const cx = centre!.x + centre!.width / 2;
    const cy = centre!.y + centre!.height / 2;
    const px = dot!.x + dot!.width / 2;
    const py = dot!.y + dot!.height / 2;
    const angle = Math.atan2(-(py - cy), px - cx);
    const radius = Math.hypot(px - cx, py - cy);
    const target = angle - Math.PI / 3;
    await a.page.mouse.move(px, py);
    await a.page.mouse.down();
    for (let s = 1; s <= 6; s++) {
      const t = angle + ((target - angle) * s) / 6;
      await a.page.mouse.move(cx + radius * Math.cos(t), cy - radius * Math.sin(t));
    }
    await a.page.mouse.up();
    await a.page.waitForFunction((v) => Number(document.getElementById('version')?.dataset.version) > v, v1, { timeout: 10_000 });
    const v2 = await versionOf(a.page);
    await b.page.waitForFunction((v) => Number(document.getElementById('version')?.dataset.version) >= v, v2, { timeout: 10_000 });
    await expect.poll(() => b.page.textContent('#log')).toMatch(/alice shift prime 2 by -(59|60|61)\.\d°/);
    expect(await a.page.textContent('#log')).toMatch(/bob joined/);

    await b.page.waitForTimeout(600); // a few more telemetry points on the charts
    for (const w of [a, b]) await noHorizontalOverflow(w.page);
    await shot(a.page, 'space-alice-1280x800');
    await shot(b.page, 'space-bob-1280x800');
    clean(a);
    clean(b);
  });
});

describe('space viewer with phases close together', () => {
  it('a pointer on a marker\'s centre grabs that prime, not the one drawn over it', async () => {
    // Primes 2 and 3 at 0.30 and 0.36 rad: equal masses, so equal dots, and 3's (drawn later) covers 2's centre.
    const spaceId = await createSpace({
      name: 'close-phases', basis: { primes: [2, 3, 5, 7] }, phases: { golden: false, silver: false, custom: [0.3, 0.36, 2, 4] },
      operators: { mixer: { gamma0: 0, gammaGrowth: 0, gammaMax: 0, temperature0: 0 }, frequencyScale: 0 }, policy: { publishHz: 1 },
    });
    const w = await open('/demo/space', DESKTOP);
    const { page } = w;
    await page.fill('#j-id', spaceId);
    await page.click('#join');
    await page.waitForSelector('#circle .marker[data-index="3"][data-phase]', { timeout: 15_000 });
    // In one turn of the page's event loop (no tick can move the markers in between): what is under marker 0's
    // centre, and which marker a press there grabs.
    const grabbed = await page.evaluate(() => {
      const dot = document.querySelector('#circle .marker[data-index="0"] .dot')!.getBoundingClientRect();
      const x = dot.left + dot.width / 2;
      const y = dot.top + dot.height / 2;
      const under = document.elementFromPoint(x, y)?.closest('.marker')?.getAttribute('data-index');
      const svg = document.querySelector('#circle svg')!;
      svg.dispatchEvent(new PointerEvent('pointerdown', { clientX: x, clientY: y, button: 0, buttons: 1, pointerId: 1, isPrimary: true, bubbles: true }));
      const focused = document.activeElement?.getAttribute('data-index');
      svg.dispatchEvent(new PointerEvent('pointercancel', { pointerId: 1, bubbles: true }));
      return { under, focused };
    });
    expect(grabbed.under, 'the test needs prime 3 drawn over prime 2').toBe('1');
    expect(grabbed.focused).toBe('0');
    clean(w);
  });
});

/** The markers as drawn (angle from the circle's centre to the dot's centre, y up) with their true phases and masses. */
async function circleState(page: Page): Promise<{
  frame: string;
  caption: string;
  mean: [number, number];
  markers: Array<{ angle: number; phase: number; mass: number; valuenow: number }>;
}> {
  return page.evaluate(() => {
    const svg = document.querySelector('#circle svg') as SVGSVGElement;
    const c = svg.getBoundingClientRect();
    const cx = c.left + c.width / 2;
    const cy = c.top + c.height / 2;
    const line = svg.querySelector('.mean')!;
    return {
      frame: svg.dataset.frame ?? '',
      caption: document.querySelector('#circle .frame-caption')?.textContent ?? '',
      mean: [Number(line.getAttribute('x2')), Number(line.getAttribute('y2'))] as [number, number],
      markers: Array.from(svg.querySelectorAll<SVGGElement>('.marker')).map((g) => {
        const d = g.querySelector('.dot')!.getBoundingClientRect();
        return {
          angle: Math.atan2(-(d.top + d.height / 2 - cy), d.left + d.width / 2 - cx),
          phase: Number(g.dataset.phase),
          mass: Number(g.dataset.mass),
          valuenow: Number(g.getAttribute('aria-valuenow')),
        };
      }),
    };
  });
}

describe('space viewer in the co-rotating frame', () => {
  it('draws each prime at its phase minus the mean phase: a space turning as one stands still, the sliders keep the true phase, a drag aims at what is drawn', async () => {
    // Four primes turning together: in the fixed frame they all turn, relative to the mean phase none does.
    const w = await joinSpaceTurningAsOne('co-rotating', [2, 3, 5, 7], [2.5, 3.0, 3.5, 4.0]);
    const { page } = w;

    const meanOf = (ms: Array<{ phase: number; mass: number }>): number =>
      Math.atan2(ms.reduce((s, m) => s + m.mass * Math.sin(m.phase), 0), ms.reduce((s, m) => s + m.mass * Math.cos(m.phase), 0));
    const first = await circleState(page);
    expect(first.frame).toBe('corotating');
    expect(first.caption).toMatch(/^Rotating with the mean phase \(now \d+°\)/);
    const mean = meanOf(first.markers);
    for (const m of first.markers) expect(Math.abs(wrapPi(m.angle - (m.phase - mean))), JSON.stringify(m)).toBeLessThan(0.01);
    // The mean phase vector points along +x; its length is r (phases spread over 1.5 rad: about 0.76).
    expect(first.mean[0]).toBeGreaterThan(0.7);
    expect(Math.abs(first.mean[1])).toBeLessThan(1e-3);
    // The slider's value is the true phase (refreshed once a second), not the drawn angle, which is a mean phase (> 1.6 rad here) away.
    for (const m of first.markers) {
      expect(Math.abs(wrapPi(m.valuenow - m.phase)), JSON.stringify(m)).toBeLessThan(0.35);
      expect(Math.abs(wrapPi(m.valuenow - m.angle)), JSON.stringify(m)).toBeGreaterThan(1);
    }

    // Two seconds on: four ticks turned every phase by -0.4 rad; the picture did not move.
    await page.waitForTimeout(2_000);
    const later = await circleState(page);
    for (let i = 0; i < 4; i++) {
      expect(Math.abs(wrapPi(later.markers[i]!.phase - first.markers[i]!.phase)), `prime ${i} turned`).toBeGreaterThan(0.25);
      expect(Math.abs(wrapPi(later.markers[i]!.angle - first.markers[i]!.angle)), `prime ${i} drawn still`).toBeLessThan(0.01);
    }

    // The fixed frame draws the true phases, the mean vector at the mean phase; and back.
    await page.check('#circle input[type="radio"][value="fixed"]');
    const fixed = await circleState(page);
    expect(fixed.frame).toBe('fixed');
    expect(fixed.caption).toMatch(/^Fixed frame/);
    for (const m of fixed.markers) expect(Math.abs(wrapPi(m.angle - m.phase)), JSON.stringify(m)).toBeLessThan(0.01);
    expect(Math.abs(wrapPi(Math.atan2(-fixed.mean[1], fixed.mean[0]) - meanOf(fixed.markers)))).toBeLessThan(0.01);
    await page.check('#circle input[type="radio"][value="corotating"]');
    expect((await circleState(page)).frame).toBe('corotating');

    // A drag from prime 3 where it is drawn, 40° counter-clockwise along the circle, shifts its phase by +40°.
    await page.locator('#circle svg').scrollIntoViewIfNeeded();
    const box = (await page.locator('#circle svg').boundingBox())!;
    const dot = (await page.locator('#circle .marker[data-index="1"] .dot').boundingBox())!;
    const cx = box.x + box.width / 2;
    const cy = box.y + box.height / 2;
    const px = dot.x + dot.width / 2;
    const py = dot.y + dot.height / 2;
    const angle = Math.atan2(-(py - cy), px - cx);
    const radius = Math.hypot(px - cx, py - cy);
    await page.mouse.move(px, py);
    await page.mouse.down();
    for (let s = 1; s <= 6; s++) {
      const t = angle + ((40 * Math.PI) / 180) * (s / 6);
      await page.mouse.move(cx + radius * Math.cos(t), cy - radius * Math.sin(t));
    }
    await page.mouse.up();
    await page.waitForFunction(() => /Shift of prime 3 accepted/.test(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 10_000 });
    await expect.poll(() => page.textContent('#log')).toMatch(/you shift prime 3 by \+(39|40|41)\.\d°/);
    clean(w);
  });

  it('gives primes at nearly one phase labels that do not overlap, in either frame', async () => {
    // Five primes within 0.05 rad, one across the circle: the five markers overlap, their labels must not.
    const primes = [2, 3, 5, 7, 11, 13];
    const w = await joinSpaceTurningAsOne('crowded', primes, [0.3, 0.31, 0.32, 0.33, 0.345, 3.5]);
    const { page } = w;
    await page.waitForSelector('#circle .label');
    const corotating = await circleLabels(page);
    expectReadableLabels(corotating.labels, corotating.svg, primes);
    await page.check('#circle input[type="radio"][value="fixed"]');
    const fixed = await circleLabels(page);
    expectReadableLabels(fixed.labels, fixed.svg, primes);
    clean(w);
  });
});

describe('space viewer at 1280x800', () => {
  it('shows a join error without scrolling', async () => {
    const w = await open('/demo/space', DESKTOP);
    await w.page.fill('#j-id', 'spc_does_not_exist');
    await w.page.click('#join');
    await w.page.waitForFunction(() => /^Could not join/.test(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 15_000 });
    const box = (await w.page.locator('#status').boundingBox())!;
    expect(box.y + box.height, 'the status line ends below the fold').toBeLessThanOrEqual(DESKTOP.height);
    // The refused join is an expected 404 in the console.
    w.errors = w.errors.filter((e) => !/status of 404/.test(e));
    clean(w);
  });
});

describe('space viewer across a server restart', () => {
  it('shows a lost connection in red at once and clears it when the session is back', async () => {
    const own = await startServer();
    let again: TestServer | null = null;
    try {
      const spaceId = await createSpace({ name: 'restart', basis: { primes: [2, 3, 5] } }, own.url);
      const w = await open('/demo/space', DESKTOP, true, own.url);
      const { page } = w;
      await page.fill('#j-id', spaceId);
      await page.click('#join');
      await page.waitForSelector('body[data-joined="true"]', { timeout: 15_000 });
      expect(await page.getAttribute('#status', 'data-kind')).toBe('ok');

      await own.kill('SIGKILL');
      await page.waitForFunction(() => /^Connection lost/.test(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 15_000 });
      expect(await page.getAttribute('#status', 'data-kind')).toBe('error');

      again = await startServer({ dataDir: own.dataDir, port: Number(new URL(own.url).port) });
      await page.waitForFunction(() => /^Reconnected at version \d+/.test(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 30_000 });
      expect(await page.getAttribute('#status', 'data-kind')).toBe('ok');
      // The page's own failed requests while the server was down are expected; nothing else went wrong.
      w.errors = w.errors.filter((e) => !/ERR_CONNECTION_REFUSED|WebSocket connection .* failed|Failed to load resource/.test(e));
      clean(w);
    } finally {
      await again?.stop();
      await own.stop();
    }
  }, 90_000);
});

describe('phone width', () => {
  it('renders both pages at 390x844 without horizontal overflow', async () => {
    const p = await open('/demo/playground', PHONE);
    await p.page.fill('#config-json', JSON.stringify(await exampleConfig(), null, 2));
    const run = await runInBrowser(p.page);
    expect(run.backend).toBe('webgpu');
    await noHorizontalOverflow(p.page);
    expect(await unlabelled(p.page)).toEqual([]);
    // The results follow the Run buttons, before the long form: within a screen of them.
    const runButton = (await p.page.locator('#run-browser').boundingBox())!;
    const results = (await p.page.locator('section.results').boundingBox())!;
    expect(results.y).toBeGreaterThan(runButton.y);
    expect(results.y - runButton.y, 'results start this far below Run').toBeLessThan(PHONE.height);
    await shot(p.page, 'playground-390x844');
    clean(p);

    const s = await open('/demo/space', PHONE);
    await s.page.fill('#c-hz', '10');
    await s.page.click('#create');
    await s.page.waitForSelector('body[data-joined="true"]', { timeout: 15_000 });
    await s.page.waitForSelector('#circle .marker[data-phase]', { timeout: 10_000 });
    await s.page.waitForTimeout(800);
    await noHorizontalOverflow(s.page);
    expect(await unlabelled(s.page)).toEqual([]);
    // Every prime on the circle is a keyboard-operable slider with a name.
    expect(await s.page.locator('#circle .marker[role="slider"][tabindex="0"][aria-label^="Phase of prime"]').count()).toBe(6);
    await shot(s.page, 'space-390x844');
    clean(s);

    const index = await open('/demo', PHONE, false);
    expect(await index.page.locator('main a[href="/demo/playground"]').count()).toBe(1);
    await noHorizontalOverflow(index.page);
    clean(index);
  });

  it('serves the pages with a strict CSP and the right content types, without credentials', async () => {
    for (const [path, type] of [['/demo', 'text/html'], ['/demo/playground', 'text/html'], ['/demo/space', 'text/html'], ['/demo/playground.js', 'text/javascript'], ['/demo/style.css', 'text/css'], ['/demo/space.js.map', 'application/json']] as const) {
      const res = await fetch(server.url + path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type'), path).toContain(type);
      expect(res.headers.get('content-security-policy'), path).toMatch(/default-src 'self'.*connect-src 'self'(;|$)/);
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    }
    for (const path of ['/demo/..%2Fpackage.json', '/demo/nope.js', '/demo/.env.js']) expect((await fetch(server.url + path)).status, path).toBe(404);
  });
});
