/**
 * The HQE playground: a config form and a JSON editor kept in sync and validated locally with the model's
 * own normalize(); "Run in browser" steps the config on the WebGPU engine (navigator.gpu, the WGSL of
 * shaders/ bundled as text) or, without WebGPU, on the CPU engine on this thread; "Run on server" goes
 * through the SDK. Live plots of the five metrics with events, the phases on the unit circle, and a
 * comparison of the final metrics.
 */
import { CpuEngine } from '../src/engine/cpu/engine.js';
import { type WasmModule, wasmModuleOf } from '../src/engine/cpu/wasm.js';
import ENGINE_RELAXED_WASM from '../dist/wasm/engine-relaxed.wasm';
import ENGINE_WASM from '../dist/wasm/engine.wasm';
import { type Engine, Flag, type TickRecord } from '../src/engine/types.js';
import { WebGpuEngine } from '../src/engine/webgpu/engine.js';
import type { NormalizedConfig } from '../src/model/config.js';
import { normalize } from '../src/model/normalize.js';
import { firstPrimes } from '../src/model/primes.js';
import { specFromConfig } from '../src/model/spec.js';
import type { HqeConfigInput, HqeRunResult as ServerResult } from '@resonance/sdk';
import { type HqeRunResult, resultFromRecords, ticksPerAdvance } from '../src/sim/run.js';
import commonWgsl from '../shaders/common.wgsl';
import denseWgsl from '../shaders/dense.wgsl';
import learnWgsl from '../shaders/learn.wgsl';
import layoutWgsl from '../shaders/layout.wgsl';
import visitWgsl from '../shaders/visit.wgsl';
import exampleConfig from '../examples/hqe.json';
import { $, apiKeyField, clientOrSay, errorText, fmt, type Marker, type MetricName, METRIC_LABELS, MetricCharts, METRICS, PhaseCircle, say } from './common.js';

const SHADERS: Record<string, string> = { layout: layoutWgsl, common: commonWgsl, dense: denseWgsl, visit: visitWgsl, learn: learnWgsl };
/** docs/model.md section 7: metrics within 1e-4 across backends. */
const PARITY_BAR = 1e-4;

type Config = Record<string, unknown>;

// ---- the form: one field per main config entry, each bound to a JSON path ----

type FieldKind = 'number' | 'int' | 'primes' | 'checkbox' | 'select';
interface Field {
  id: string;
  path: string[];
  label: string;
  kind: FieldKind;
  group: string;
  /** Shown as placeholder (the schema's default). */
  placeholder?: string;
  options?: string[];
  step?: string;
  help?: string;
}

const FIELDS: Field[] = [
  { id: 'f-primes', path: ['primes'], label: 'Primes', kind: 'primes', group: 'Basis', help: 'the basis: distinct primes, comma-separated (e.g. 2, 3, 5, 7); k = how many' },
  { id: 'f-seed', path: ['seed'], label: 'Seed', kind: 'int', group: 'Basis', placeholder: 'drawn at run', help: 'integer 0 to 4294967295 for the phase noise; same seed, same run' },
  { id: 'f-golden', path: ['phaseSeeding', 'golden'], label: 'Golden phase seeding', kind: 'checkbox', group: 'Basis', help: 'prime i starts at i × 137.5° (the golden angle), spreading the phases' },
  { id: 'f-silver', path: ['phaseSeeding', 'silver'], label: 'Silver phase seeding', kind: 'checkbox', group: 'Basis', help: 'adds i × 61.8° (the silver angle); both off: every phase starts at 0°' },
  { id: 'f-steps', path: ['schedule', 'steps'], label: 'Steps', kind: 'int', group: 'Schedule', placeholder: '256', help: 'steps per restart (integer ≥ 0); each advances model time by dt' },
  { id: 'f-dt', path: ['schedule', 'dt'], label: 'dt', kind: 'number', group: 'Schedule', placeholder: '0.1', step: '0.01', help: 'integration step, in model time units (> 0, at most 10)' },
  { id: 'f-restarts', path: ['schedule', 'restarts'], label: 'Restarts', kind: 'int', group: 'Schedule', placeholder: '0', help: 'times a plateau or the last step re-seeds the phases and runs on (0–1000; masses kept)' },
  { id: 'f-plateauT', path: ['schedule', 'plateauT'], label: 'Plateau patience (steps)', kind: 'int', group: 'Schedule', placeholder: '150', help: 'steps without an entropy drop that make a plateau (integer ≥ 1)' },
  { id: 'f-mixer', path: ['mixer', 'type'], label: 'Mixer', kind: 'select', group: 'Mixer', options: ['local', 'flow', 'learned'], help: 'who pulls on whom: local (close log-primes more), flow (all alike), learned (local, grows where in phase)' },
  { id: 'f-gamma0', path: ['mixer', 'gamma0'], label: 'gamma0 (coupling)', kind: 'number', group: 'Mixer', placeholder: '0.2', step: '0.01', help: 'starting pull towards the neighbours\' phases, in rad per time unit (≥ 0); grows until the target' },
  { id: 'f-temp', path: ['mixer', 'temperature0'], label: 'Temperature0', kind: 'number', group: 'Mixer', placeholder: '1', step: '0.05', help: 'starting phase noise (≥ 0; 0 = none): random kicks that help escape poor locks' },
  { id: 'f-beta', path: ['mixer', 'beta'], label: 'beta (cooling)', kind: 'number', group: 'Mixer', placeholder: '0.98', step: '0.01', help: 'temperature × beta after each step (0 < beta ≤ 1; 1 = never cools)' },
  { id: 'f-locality', path: ['mixer', 'localityBias'], label: 'Locality bias', kind: 'number', group: 'Mixer', placeholder: '0.3', step: '0.05', help: '0–1: how much more primes of similar size couple (0 = not at all); ignored by flow' },
  { id: 'f-base', path: ['entropy', 'base'], label: 'Entropy base', kind: 'select', group: 'Entropy and target', options: ['shannon', 'kl_to_prior'], help: 'entropy metric (0–1): shannon of the masses, or kl_to_prior, nearness to the starting masses' },
  { id: 'f-lambda', path: ['entropy', 'lambda'], label: 'lambda', kind: 'number', group: 'Entropy and target', placeholder: '0.02', step: '0.01', help: 'rate at which mass moves to primes in phase with their neighbours, per time unit (≥ 0; 0 = fixed)' },
  { id: 'f-target-on', path: ['resonanceTarget'], label: 'Resonance target', kind: 'checkbox', group: 'Entropy and target', help: 'hold the coupling once the resonance reaches the target; off: it grows every step, no convergence' },
  { id: 'f-target', path: ['resonanceTarget', 'value'], label: 'Target value', kind: 'number', group: 'Entropy and target', placeholder: '0.8', step: '0.01', help: 'r* in 0–1: converged once the resonance stays at or above r* − 0.02' },
  { id: 'f-operator', path: ['resonanceTarget', 'operator'], label: 'Target operator', kind: 'select', group: 'Entropy and target', options: ['R', 'R_q', 'custom'], help: 'which resonance: R resonance strength, R_q coherence, custom weighted (weights in the JSON)' },
  { id: 'f-norm', path: ['boundary', 'norm'], label: 'Norm', kind: 'select', group: 'Boundary and output', options: ['L2', 'L1'], help: 'amplitude from mass: L2 a = √P (quantum-like), L1 a = P' },
  { id: 'f-metrics', path: ['observables', 'metricsInterval'], label: 'Metrics every (steps)', kind: 'int', group: 'Boundary and output', placeholder: '10', help: 'steps between metric records, the chart points (integer ≥ 1)' },
  { id: 'f-snaps', path: ['observables', 'snapshotsInterval'], label: 'Snapshot every (steps)', kind: 'int', group: 'Boundary and output', placeholder: '32', help: 'steps between full-state snapshots (integer ≥ 1); the last state is always one' },
  { id: 'f-phases', path: ['observables', 'recordPhases'], label: 'Record phases (server snapshots)', kind: 'checkbox', group: 'Boundary and output', help: 'server snapshots carry phases, so the circle can show a server run' },
];

// ---- presets: named configurations that fill the form and the JSON ----

interface Preset {
  id: string;
  name: string;
  /** One sentence: what the configuration shows. */
  description: string;
  config: Config;
}

const PRESETS: Preset[] = [
  {
    id: 'example',
    name: 'HQE example (4 primes)',
    description: 'The repository\'s examples/hqe.json: four primes with golden and silver seeding; the coupling grows until resonance strength holds at 0.8.',
    config: exampleConfig as Config,
  },
  {
    id: 'quick-lock',
    name: 'Quick lock (8 primes)',
    description: 'Eight primes all coupled alike (flow mixer), strongly and without noise: the phases lock in about 100 steps and the markers stop turning.',
    config: {
      primes: firstPrimes(8), phaseSeeding: { golden: true }, mixer: { type: 'flow', gamma0: 1, temperature0: 0 },
      resonanceTarget: { value: 0.95, operator: 'R' }, schedule: { steps: 200, dt: 0.1 }, seed: 7,
    },
  },
  {
    id: 'noisy-search',
    name: 'Noisy search (64 primes, temperature)',
    description: 'Sixty-four primes under phase noise that cools slowly (temperature 0.8, beta 0.995): the coupling grows against the noise until r holds at 0.7, with up to two restarts.',
    config: {
      primes: firstPrimes(64), phaseSeeding: { golden: true, silver: true }, mixer: { type: 'local', gamma0: 0.3, gammaGrowth: 0.002, temperature0: 0.8, beta: 0.995 },
      entropy: { lambda: 0.03 }, resonanceTarget: { value: 0.7, operator: 'R' }, schedule: { steps: 400, dt: 0.1, restarts: 2, plateauT: 100 }, seed: 11,
    },
  },
  {
    id: 'big-basis',
    name: 'Big basis (512 primes)',
    description: 'The first 512 primes on the local kernel, about 262,000 coupled pairs a step: the dense pass that WebGPU is for (no labels on the circle at this size).',
    config: {
      primes: firstPrimes(512), phaseSeeding: { golden: true, silver: true }, mixer: { type: 'local', gamma0: 1, gammaGrowth: 0.01, gammaMax: 3, temperature0: 0.1 },
      entropy: { lambda: 0.05 }, resonanceTarget: { value: 0.9, operator: 'R' }, schedule: { steps: 160, dt: 0.1 },
      observables: { metricsInterval: 4, snapshotsInterval: 16 }, seed: 3,
    },
  },
  {
    id: 'target-coherence',
    name: 'Target coherence (R_q)',
    description: 'Sixteen primes whose coupling is controlled by coherence C (operator R_q) rather than r: the dotted target line moves to the coherence chart.',
    config: {
      primes: firstPrimes(16), phaseSeeding: { golden: true }, mixer: { type: 'local', gamma0: 0.3, temperature0: 0.3, beta: 0.97 },
      entropy: { lambda: 0.03 }, resonanceTarget: { value: 0.9, operator: 'R_q' }, schedule: { steps: 400, dt: 0.1 }, seed: 5,
    },
  },
];
const CUSTOM_DESCRIPTION = 'Your own configuration: edited in the form or the JSON (choose a preset to start again from one).';

function buildPresets(): void {
  const select = $<HTMLSelectElement>('preset');
  for (const p of PRESETS) select.append(new Option(p.name, p.id));
  select.append(new Option('Custom (edited)', 'custom'));
  select.addEventListener('change', () => {
    const preset = PRESETS.find((p) => p.id === select.value);
    // "Custom" keeps the configuration as it is.
    if (!preset) {
      $('preset-desc').textContent = CUSTOM_DESCRIPTION;
      return;
    }
    config = structuredClone(preset.config);
    $('config-json').removeAttribute('aria-invalid');
    writeJson();
    toForm();
    validate();
    showPreset();
  });
}

/** The preset the configuration is (or Custom once edited), and its description. */
function showPreset(): void {
  const select = $<HTMLSelectElement>('preset');
  const text = JSON.stringify(config);
  const preset = PRESETS.find((p) => JSON.stringify(p.config) === text);
  select.value = preset?.id ?? 'custom';
  $('preset-desc').textContent = preset?.description ?? CUSTOM_DESCRIPTION;
}

let config: Config = structuredClone(exampleConfig) as Config;
const inputs = new Map<string, HTMLInputElement | HTMLSelectElement>();

function getPath(obj: Config, path: string[]): unknown {
  let node: unknown = obj;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

function setPath(obj: Config, path: string[], value: unknown): void {
  let node = obj as Record<string, unknown>;
  for (const key of path.slice(0, -1)) {
    if (node[key] === null || typeof node[key] !== 'object' || Array.isArray(node[key])) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  const leaf = path[path.length - 1]!;
  if (value === undefined) delete node[leaf];
  else node[leaf] = value;
  // Drop objects that became empty, so the JSON stays minimal.
  for (let depth = path.length - 1; depth > 0; depth--) {
    const parent = getPath(obj, path.slice(0, depth - 1)) as Record<string, unknown>;
    const key = path[depth - 1]!;
    const child = parent?.[key];
    if (child && typeof child === 'object' && !Array.isArray(child) && Object.keys(child).length === 0) delete parent[key];
  }
}

function buildForm(): void {
  const root = $('fields');
  const groups = new Map<string, HTMLFieldSetElement>();
  for (const f of FIELDS) {
    let fs = groups.get(f.group);
    if (!fs) {
      fs = document.createElement('fieldset');
      const legend = document.createElement('legend');
      legend.textContent = f.group;
      fs.append(legend);
      root.append(fs);
      groups.set(f.group, fs);
    }
    const row = document.createElement('div');
    row.className = f.kind === 'checkbox' ? 'field check' : 'field';
    const label = document.createElement('label');
    label.htmlFor = f.id;
    label.textContent = f.label;
    let input: HTMLInputElement | HTMLSelectElement;
    if (f.kind === 'select') {
      const sel = document.createElement('select');
      for (const o of f.options ?? []) sel.append(new Option(o, o));
      input = sel;
    } else {
      const inp = document.createElement('input');
      inp.type = f.kind === 'checkbox' ? 'checkbox' : f.kind === 'primes' ? 'text' : 'number';
      if (f.kind === 'int') inp.step = '1';
      if (f.kind === 'number') inp.step = f.step ?? 'any';
      if (f.kind !== 'checkbox') inp.inputMode = f.kind === 'int' ? 'numeric' : f.kind === 'number' ? 'decimal' : 'text';
      if (f.placeholder) inp.placeholder = f.placeholder;
      input = inp;
    }
    input.id = f.id;
    input.name = f.path.join('.');
    if (f.help) {
      const help = document.createElement('span');
      help.className = 'help';
      help.id = `${f.id}-help`;
      help.textContent = f.help;
      input.setAttribute('aria-describedby', help.id);
      if (f.kind === 'checkbox') row.append(input, label, help);
      else row.append(label, input, help);
    } else if (f.kind === 'checkbox') row.append(input, label);
    else row.append(label, input);
    fs.append(row);
    inputs.set(f.id, input);
    input.addEventListener(f.kind === 'checkbox' || f.kind === 'select' ? 'change' : 'input', () => fromForm(f));
  }
}

/** One form field changed: write it into the config, then the JSON. */
function fromForm(f: Field): void {
  const input = inputs.get(f.id)!;
  if (f.id === 'f-target-on') {
    const on = (input as HTMLInputElement).checked;
    setPath(config, ['resonanceTarget'], on ? { value: Number((inputs.get('f-target') as HTMLInputElement).value || 0.8), operator: (inputs.get('f-operator') as HTMLSelectElement).value || 'R' } : undefined);
  } else if (f.kind === 'checkbox') {
    setPath(config, f.path, (input as HTMLInputElement).checked);
  } else if (f.kind === 'select') {
    setPath(config, f.path, input.value);
  } else if (f.kind === 'primes') {
    const parts = input.value.split(/[\s,;]+/).filter((s) => s.length > 0);
    setPath(config, f.path, parts.map((s) => (/^-?\d+(\.\d+)?$/.test(s) ? Number(s) : s)));
  } else {
    const raw = input.value.trim();
    setPath(config, f.path, raw === '' ? undefined : Number(raw));
  }
  writeJson();
  toForm();
  validate();
  showPreset();
}

/** The config into the form (fields without a value show the default as placeholder). */
function toForm(): void {
  for (const f of FIELDS) {
    const input = inputs.get(f.id)!;
    const v = getPath(config, f.path);
    if (f.id === 'f-target-on') {
      (input as HTMLInputElement).checked = v !== undefined && v !== null;
      continue;
    }
    if (f.kind === 'checkbox') (input as HTMLInputElement).checked = v === true;
    else if (f.kind === 'select') input.value = typeof v === 'string' ? v : (f.options?.[0] ?? '');
    else if (f.kind === 'primes') {
      const text = Array.isArray(v) ? v.join(', ') : '';
      // Keep what the user is typing ("2, 3, ") when it means the same list.
      if (document.activeElement !== input || input.value.split(/[\s,;]+/).filter(Boolean).join(', ') !== text) input.value = text;
    } else if (document.activeElement !== input || Number(input.value) !== v) input.value = v === undefined || v === null ? '' : String(v);
  }
  const targetOn = (inputs.get('f-target-on') as HTMLInputElement).checked;
  (inputs.get('f-target') as HTMLInputElement).disabled = !targetOn;
  (inputs.get('f-operator') as HTMLSelectElement).disabled = !targetOn;
}

/** The config as indented JSON, arrays of numbers on one line (a 512-prime basis is one line, not 512). */
function jsonText(value: Config): string {
  return JSON.stringify(value, null, 2).replace(/\[\s+(-?\d[\d.eE+-]*(?:,\s+-?\d[\d.eE+-]*)*)\s+\]/g, (_, body: string) => `[${body.split(/,\s+/).join(', ')}]`);
}

function writeJson(): void {
  $<HTMLTextAreaElement>('config-json').value = jsonText(config);
}

/** Local validation with the model's normalize(): errors by JSON pointer, marked on their fields. */
function validate(): { cfg: NormalizedConfig; warnings: string[] } | null {
  const out = $('validation');
  for (const input of inputs.values()) input.removeAttribute('aria-invalid');
  const result = normalize(config);
  if (!result.ok) {
    out.replaceChildren();
    const head = document.createElement('p');
    head.textContent = `${result.errors.length} problem${result.errors.length > 1 ? 's' : ''} in the configuration:`;
    const list = document.createElement('ul');
    for (const e of result.errors) {
      const li = document.createElement('li');
      li.textContent = `${e.pointer || '/'}: ${e.message}`;
      list.append(li);
      const f = FIELDS.find((x) => e.pointer === `/${x.path.join('/')}` || e.pointer.startsWith(`/${x.path.join('/')}/`));
      if (f) inputs.get(f.id)!.setAttribute('aria-invalid', 'true');
    }
    out.append(head, list);
    out.dataset.kind = 'error';
    setRunnable(false);
    return null;
  }
  const k = result.normalized.primes.length;
  const steps = result.normalized.schedule.steps * (result.normalized.schedule.restarts + 1);
  say(out, `Valid: k = ${k} primes, up to ${steps} steps.${result.warnings.length ? ` Warnings: ${result.warnings.join('; ')}` : ''}`, 'ok');
  setRunnable(true);
  // The target line: on resonance strength (operator R) or coherence (R_q); a custom resonance has no chart.
  const target = result.normalized.resonanceTarget;
  charts?.setTarget(target?.operator === 'R_q' ? 'coherence' : 'resonanceStrength', target && target.operator !== 'custom' ? target.value : null);
  return { cfg: result.normalized, warnings: result.warnings };
}

function setRunnable(ok: boolean): void {
  if (running) return;
  $<HTMLButtonElement>('run-browser').disabled = !ok;
  $<HTMLButtonElement>('run-server').disabled = !ok;
}

// ---- engines ----

interface BrowserEngine {
  engine: Engine;
  backend: 'webgpu' | 'cpu';
  label: string;
}

let gpuEngine: Promise<BrowserEngine> | null = null;

function adapterText(adapter: GPUAdapter): string {
  const info = adapter.info;
  const text = [info.vendor, info.architecture, info.device, info.description].filter((s) => s && s.length > 0).join(' / ');
  const fallback = (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
  return `${text || 'unnamed adapter'}${fallback ? ' (fallback adapter)' : ''}`;
}

/** The adapter's maximum of the limits the engine sizes itself by (as the Node device module asks for). */
function wantedLimits(adapter: GPUAdapter): Record<string, number> {
  const names = [
    'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX',
    'maxComputeWorkgroupSizeY', 'maxComputeWorkgroupSizeZ', 'maxComputeWorkgroupStorageSize', 'maxComputeWorkgroupsPerDimension',
    'maxStorageBuffersPerShaderStage',
  ];
  const out: Record<string, number> = {};
  for (const name of names) {
    const v = (adapter.limits as unknown as Record<string, number | undefined>)[name];
    if (typeof v === 'number') out[name] = v;
  }
  return out;
}

async function createGpuEngine(): Promise<BrowserEngine> {
  if (!('gpu' in navigator) || !navigator.gpu) throw new Error('this browser has no WebGPU (navigator.gpu is missing)');
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('WebGPU is present but no adapter was offered (navigator.gpu.requestAdapter() returned null)');
  const label = adapterText(adapter);
  const device = await adapter.requestDevice({ requiredLimits: wantedLimits(adapter) });
  void device.lost.then(() => {
    gpuEngine = null;
  });
  const engine = await WebGpuEngine.create({ allowSoftware: true, device, adapterLabel: label, shaderSource: (name) => {
    const src = SHADERS[name];
    if (src === undefined) throw new Error(`no shader ${name}.wgsl in the bundle`);
    return src;
  } });
  return { engine, backend: 'webgpu', label };
}

let wasmModule: Promise<WasmModule | null> | null = null;

/**
 * The CPU engine's WebAssembly module (SIMD dense pass, per-prime loops), the one the server runs (both builds in the
 * bundle; the relaxed one where the browser validates it). It needs a shared memory, so a page that is not
 * cross-origin isolated (the server sends COOP and COEP) or a browser without SIMD keeps the TypeScript pass.
 */
function browserWasm(): Promise<WasmModule | null> {
  wasmModule ??= globalThis.crossOriginIsolated ? wasmModuleOf(ENGINE_WASM, ENGINE_RELAXED_WASM).catch(() => null) : Promise.resolve(null);
  return wasmModule;
}

async function browserEngine(choice: string): Promise<BrowserEngine & { note: string }> {
  const cpu = async (note: string): Promise<BrowserEngine & { note: string }> => {
    const dense = await browserWasm();
    const engine = new CpuEngine({ precision: 'f64', threads: 0, loops: dense ?? 'ts' });
    return { engine, backend: 'cpu', label: `CPU engine, ${engine.info.adapter.replace(/^cpu /, '').replace('calling thread', 'the page thread')}`, note };
  };
  if (choice === 'cpu') return cpu('chosen in the form');
  try {
    gpuEngine ??= createGpuEngine();
    return { ...(await gpuEngine), note: 'navigator.gpu' };
  } catch (err) {
    gpuEngine = null;
    return cpu(`WebGPU unavailable: ${errorText(err)}`);
  }
}

// ---- runs ----

let running = false;
let stopRequested = false;
let browserRun: { result: HqeRunResult; records: TickRecord[]; cfg: NormalizedConfig } | null = null;
let serverRun: ServerResult | null = null;
/** The normalized config the server run ran: a comparison is made only between runs of one config. */
let serverCfg: NormalizedConfig | null = null;
let liveRecords: TickRecord[] = [];
let liveMaxSteps = 0;

/** Made at init; validate() runs once before it. */
let charts: MetricCharts | null = null;
let circle: PhaseCircle;

const EVENT_MARKS: Array<[number, string, string]> = [
  [Flag.CONVERGED, 'C', '#0072b2'],
  [Flag.PLATEAU, 'P', '#d55e00'],
  [Flag.RESTART, 'R', '#555555'],
  [Flag.FAILED, 'F', '#b00020'],
];

function markersOf(records: TickRecord[]): Marker[] {
  const out: Marker[] = [];
  for (const r of records) for (const [bit, label, color] of EVENT_MARKS) if (r.flags & bit) out.push({ x: r.step, label, color });
  return out;
}

function serverMarkers(events: ServerResult['events']): Marker[] {
  const byType: Record<string, [string, string]> = { converged: ['C', '#0072b2'], plateau: ['P', '#d55e00'], restart: ['R', '#555555'], failed: ['F', '#b00020'] };
  return events.flatMap((e) => (byType[e.type] ? [{ x: e.step, label: byType[e.type]![0], color: byType[e.type]![1] }] : []));
}

function redrawCharts(): void {
  if (!charts) return;
  const series: Parameters<MetricCharts['set']>[0] = [];
  const records = running ? liveRecords : (browserRun?.records ?? []);
  if (records.length > 0) {
    series.push({ name: 'browser', points: (m: MetricName) => records.map((r) => [r.step, r.metrics[m]] as [number, number]) });
  }
  if (serverRun) {
    const s = serverRun;
    series.push({
      name: 'server',
      dashed: true,
      points: (m: MetricName) => [...s.metrics.map((x) => [x.step, x[m] ?? NaN] as [number, number]), [s.steps, s.finalMetrics[m] ?? NaN]],
    });
  }
  const markers = records.length > 0 ? markersOf(records) : serverRun ? serverMarkers(serverRun.events) : [];
  charts.set(series, markers, running && liveMaxSteps > 0 ? [0, liveMaxSteps] : null);
  const last = records[records.length - 1];
  if (last) charts.setLatest(last.metrics, last.step);
  else if (serverRun) charts.setLatest(serverRun.finalMetrics, serverRun.steps);
}

function massesOf(amplitudes: ArrayLike<number>, norm: 'L1' | 'L2'): number[] {
  const m = Array.from(amplitudes, (a) => (norm === 'L2' ? a * a : Math.abs(a)));
  const total = m.reduce((s, x) => s + x, 0);
  return total > 0 ? m.map((x) => x / total) : m;
}

function drawCircle(primes: number[], phases: ArrayLike<number>, amplitudes: ArrayLike<number>, norm: 'L1' | 'L2', step: number, where: string): void {
  circle.update(primes, phases, massesOf(amplitudes, norm));
  $('circle-caption').textContent = `Phases at step ${step} (${where} run): marker area ∝ mass; the line is the mass-weighted mean phase vector, its length the resonance strength r.`;
  $('circle').dataset.step = String(step);
}

function progress(step: number, max: number, text?: string): void {
  const bar = $<HTMLProgressElement>('progress');
  bar.max = Math.max(1, max);
  bar.value = Math.min(step, max);
  $('progress-text').textContent = text ?? `step ${step} of at most ${max}`;
}

/** Before a run: a config without a seed gets the drawn one written in, so browser and server runs match. */
function pinSeed(cfg: NormalizedConfig): void {
  if (config.seed === undefined) {
    config.seed = cfg.seed;
    writeJson();
    toForm();
  }
}

function setRunning(on: boolean): void {
  running = on;
  $<HTMLButtonElement>('stop').disabled = !on;
  $<HTMLButtonElement>('run-browser').disabled = on;
  $<HTMLButtonElement>('run-server').disabled = on;
  $('main').setAttribute('aria-busy', String(on));
  if (!on) validate();
}

async function runInBrowser(): Promise<void> {
  const v = validate();
  if (!v || running) return;
  pinSeed(v.cfg);
  const status = $('status');
  setRunning(true);
  stopRequested = false;
  status.dataset.state = 'running';
  say(status, 'Starting the engine…');
  const started = performance.now();
  const chosen = await browserEngine($<HTMLSelectElement>('engine-choice').value);
  const engineEl = $('engine');
  engineEl.dataset.backend = chosen.backend;
  engineEl.dataset.adapter = chosen.label;
  say(engineEl, chosen.backend === 'webgpu' ? `Engine: WebGPU on ${chosen.label}.` : `Engine: ${chosen.label} (${chosen.note}).`, chosen.backend === 'webgpu' ? 'ok' : 'info');

  const cfg = v.cfg;
  const spec = specFromConfig(cfg);
  const engine = chosen.engine;
  const k = spec.primes.length;
  liveMaxSteps = spec.steps * (spec.restarts + 1);
  liveRecords = [];
  browserRun = null;
  // About 120 plot updates per run, never more ticks per advance than the server's loop takes.
  const chunk = Math.max(1, Math.min(ticksPerAdvance(k), Math.ceil(liveMaxSteps / 120)));
  let id: number | null = null;
  try {
    id = engine.add(spec);
    say(status, 'Running in the browser…');
    let state = 'running';
    let lastPaint = 0;
    while (state === 'running') {
      if (stopRequested) throw new Error('stopped');
      const report = (await engine.advance(chunk)).get(id);
      if (!report) throw new Error('the engine lost the simulation');
      liveRecords.push(...report.records);
      state = report.status;
      progress(report.step, liveMaxSteps);
      const now = performance.now();
      if (now - lastPaint > 50 || state !== 'running') {
        lastPaint = now;
        redrawCharts();
        const snap = [...report.records].reverse().find((r) => r.phases && r.amplitudes);
        if (snap) drawCircle(spec.primes, snap.phases!, snap.amplitudes!, spec.norm, snap.step, 'browser');
        // Let the page paint and stay responsive.
        await new Promise((r) => setTimeout(r, 0));
      }
    }
    const result = resultFromRecords(liveRecords, cfg, v.warnings, engine.info, started);
    browserRun = { result, records: liveRecords, cfg };
    progress(1, 1, `done at step ${result.steps} of at most ${liveMaxSteps}`);
    status.dataset.state = 'done';
    say(status, `Browser run ${result.status} at step ${result.steps} in ${Math.round(result.elapsedMs)} ms (${result.restarts} restarts, seed ${result.seed}).`, 'ok');
  } catch (err) {
    status.dataset.state = 'error';
    say(status, stopRequested ? 'Stopped.' : `Browser run failed: ${errorText(err)}`, stopRequested ? 'info' : 'error');
    if (chosen.backend === 'webgpu') gpuEngine = null;
  } finally {
    if (id !== null) {
      try {
        engine.remove(id);
      } catch {
        // engine already gone
      }
    }
    if (chosen.backend === 'cpu') await engine.destroy();
    setRunning(false);
    redrawCharts();
    renderComparison();
  }
}

async function runOnServer(): Promise<void> {
  const v = validate();
  if (!v || running) return;
  const status = $('status');
  const api = clientOrSay(getKey(), status);
  if (!api) return;
  pinSeed(v.cfg);
  setRunning(true);
  status.dataset.state = 'running';
  say(status, 'Running on the server…');
  progress(0, 1, 'waiting for the server');
  try {
    // The form and the text box edit the JSON freely: the server validates it.
    serverRun = await api.hqe.run(structuredClone(config) as unknown as HqeConfigInput);
    serverCfg = v.cfg;
    progress(1, 1, `server done at step ${serverRun.steps}`);
    status.dataset.state = 'server-done';
    say(status, `Server run ${serverRun.status} at step ${serverRun.steps} on ${serverRun.backend} (${serverRun.adapter}) in ${Math.round(serverRun.elapsedMs)} ms.`, 'ok');
    if (!browserRun && serverRun.snapshots.length > 0) {
      const last = serverRun.snapshots[serverRun.snapshots.length - 1]!;
      if (last.phases && last.amplitudes) drawCircle(v.cfg.primes, last.phases, last.amplitudes, v.cfg.boundary.norm, last.step, 'server');
    }
  } catch (err) {
    status.dataset.state = 'error';
    say(status, `Server run failed: ${errorText(err)}`, 'error');
  } finally {
    setRunning(false);
    redrawCharts();
    renderComparison();
  }
}

function renderComparison(): void {
  const body = $<HTMLTableElement>('compare').tBodies[0]!;
  body.replaceChildren();
  // Runs of two configs (one edited since the other ran) are shown side by side but never compared.
  const comparable = !browserRun || !serverCfg || JSON.stringify(browserRun.cfg) === JSON.stringify(serverCfg);
  const b = browserRun?.result.finalMetrics;
  const s = serverRun?.finalMetrics;
  let max = -1;
  for (const m of METRICS) {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = METRIC_LABELS[m];
    const cell = (side: string, value: number | null | undefined, digits = 6): HTMLTableCellElement => {
      const td = document.createElement('td');
      td.dataset.metric = m;
      td.dataset.side = side;
      td.textContent = fmt(value, digits);
      if (value !== null && value !== undefined) td.dataset.value = String(value);
      return td;
    };
    const bv = b?.[m];
    const sv = s?.[m];
    const diff = comparable && typeof bv === 'number' && typeof sv === 'number' ? Math.abs(bv - sv) : null;
    if (diff !== null) max = Math.max(max, diff);
    const dcell = cell('diff', diff);
    if (diff !== null) dcell.textContent = diff.toExponential(2);
    tr.append(th, cell('browser', bv), cell('server', sv), dcell);
    body.append(tr);
  }
  const maxCell = $('max-diff');
  const table = $('compare');
  if (max >= 0) {
    const ok = max <= PARITY_BAR;
    maxCell.textContent = `${max.toExponential(2)}: ${ok ? 'within' : 'outside'} the parity bar (${PARITY_BAR.toExponential(0)} per metric)`;
    maxCell.dataset.kind = ok ? 'ok' : 'error';
    table.dataset.maxDiff = String(max);
  } else if (!comparable) {
    maxCell.textContent = 'not compared: the browser and the server ran different configurations; run both on this one';
    maxCell.dataset.kind = 'info';
    delete table.dataset.maxDiff;
  } else {
    maxCell.textContent = b || s ? 'run both to compare' : '—';
    delete maxCell.dataset.kind;
    delete table.dataset.maxDiff;
  }
  const dl = $('summary');
  dl.replaceChildren();
  const add = (term: string, text: string): void => {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.textContent = text;
    dl.append(dt, dd);
  };
  if (browserRun) {
    const r = browserRun.result;
    add('Browser', `${r.status} at step ${r.steps}, ${r.backend} (${r.adapter}), ${Math.round(r.elapsedMs)} ms`);
    add('Browser events', r.events.map((e) => `${e.type}@${e.step}`).join(', ') || 'none');
  }
  if (serverRun) {
    add('Server', `${serverRun.status} at step ${serverRun.steps}, ${serverRun.backend} (${serverRun.adapter}), ${Math.round(serverRun.elapsedMs)} ms`);
    add('Server events', serverRun.events.map((e) => `${e.type}@${e.step}`).join(', ') || 'none');
  }
}

// ---- wiring ----

let getKey: () => string = () => '';

function init(): void {
  getKey = apiKeyField();
  buildForm();
  buildPresets();
  writeJson();
  toForm();
  showPreset();
  charts = new MetricCharts($('charts'), 'step');
  circle = new PhaseCircle($('circle'), { label: 'Phases of the primes on the unit circle' });
  const json = $<HTMLTextAreaElement>('config-json');
  json.addEventListener('input', () => {
    try {
      const parsed = JSON.parse(json.value) as unknown;
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('the configuration must be a JSON object');
      config = parsed as Config;
      json.removeAttribute('aria-invalid');
      toForm();
      validate();
      showPreset();
    } catch (err) {
      json.setAttribute('aria-invalid', 'true');
      say($('validation'), `JSON: ${errorText(err)}`, 'error');
      setRunnable(false);
    }
  });
  $('run-browser').addEventListener('click', () => void runInBrowser());
  $('run-server').addEventListener('click', () => void runOnServer());
  $('stop').addEventListener('click', () => {
    stopRequested = true;
  });
  $('key-form').addEventListener('submit', (ev) => ev.preventDefault());
  validate();
  renderComparison();
  redrawCharts();
  const engineEl = $('engine');
  engineEl.textContent = 'gpu' in navigator && navigator.gpu
    ? 'Engine: WebGPU is available in this browser (an adapter is requested at the first run).'
    : 'Engine: this browser has no WebGPU; runs use the CPU engine.';
  document.body.dataset.ready = 'true';
}

init();
