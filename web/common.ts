/**
 * Shared pieces of the demo pages: the API key field (kept in localStorage), the SDK client for this
 * origin, status messages, and two hand-rolled views: a canvas line chart (one metric per chart, several
 * series, event markers, axes named with their units) and an SVG phase circle (markers on the unit circle
 * sized by mass, in a frame co-rotating with the mean phase or a fixed one, labels that never overlap;
 * optionally draggable and keyboard-operable). No chart library: the drawing is about 700 lines and has no
 * dependencies, so the pages make no request beyond this origin.
 */
import { ResonanceClient } from '@resonance/sdk';

const KEY_STORAGE = 'resonance.apiKey';

/** document.getElementById that fails loudly: the pages are static, so a missing id is a bug. */
export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el as T;
}

/** The API key input (#api-key): restored from and saved to localStorage. Returns a getter. */
export function apiKeyField(): () => string {
  const input = $<HTMLInputElement>('api-key');
  const toggle = document.getElementById('api-key-show') as HTMLButtonElement | null;
  try {
    input.value = localStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    // storage disabled: the field still works for this page
  }
  input.addEventListener('change', () => {
    try {
      if (input.value) localStorage.setItem(KEY_STORAGE, input.value.trim());
      else localStorage.removeItem(KEY_STORAGE);
    } catch {
      // ignore
    }
  });
  toggle?.addEventListener('click', () => {
    const show = input.type === 'password';
    input.type = show ? 'text' : 'password';
    toggle.setAttribute('aria-pressed', String(show));
    toggle.textContent = show ? 'Hide' : 'Show';
  });
  return () => input.value.trim();
}

/** The SDK on this page's origin (the server that served it). */
export function client(apiKey: string): ResonanceClient {
  if (!apiKey) throw new Error('enter an API key first (the server prints none; use RESONANCE_BOOTSTRAP_KEY or `resonance keys create`)');
  return new ResonanceClient({ apiKey, baseUrl: location.origin });
}

/** The SDK for the key in the API key field, or null after saying why not (and focusing the field). */
export function clientOrSay(apiKey: string, status: HTMLElement): ResonanceClient | null {
  try {
    return client(apiKey);
  } catch (err) {
    say(status, errorText(err), 'error');
    document.getElementById('api-key')?.focus();
    return null;
  }
}

/** Writes a message into an aria-live region; `kind` styles it. */
export function say(el: HTMLElement, text: string, kind: 'info' | 'ok' | 'error' = 'info'): void {
  el.textContent = text;
  el.dataset.kind = kind;
}

export function errorText(err: unknown): string {
  if (err && typeof err === 'object' && 'problem' in err) {
    const e = err as { message: string; code?: string; problem: { errors?: Array<{ pointer: string; message: string }> } | null };
    const details = e.problem?.errors?.map((x) => `${x.pointer || '/'}: ${x.message}`).join('; ');
    return `${e.code ? `${e.code}: ` : ''}${e.message}${details ? ` (${details})` : ''}`;
  }
  return err instanceof Error ? err.message : String(err);
}

export const TWO_PI = 2 * Math.PI;
export const wrap2pi = (x: number): number => ((x % TWO_PI) + TWO_PI) % TWO_PI;
/** To (-pi, pi]. */
export const wrapPi = (x: number): number => {
  const y = wrap2pi(x);
  return y > Math.PI ? y - TWO_PI : y;
};
export const degrees = (rad: number): string => `${((rad * 180) / Math.PI).toFixed(1)}°`;

export function fmt(x: number | null | undefined, digits = 6): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(digits);
}

// ---- metrics ----

export const METRICS = ['resonanceStrength', 'coherence', 'entropy', 'locality', 'dominance'] as const;
export type MetricName = (typeof METRICS)[number];
export const METRIC_LABELS: Record<MetricName, string> = {
  resonanceStrength: 'Resonance strength',
  coherence: 'Coherence',
  entropy: 'Entropy',
  locality: 'Locality',
  dominance: 'Dominance',
};
/** The symbol each chart's y axis names (docs/model.md section 5; dominance is the largest mass). */
export const METRIC_SYMBOLS: Record<MetricName, string> = {
  resonanceStrength: 'r',
  coherence: 'C',
  entropy: 'E',
  locality: 'L',
  dominance: 'max P',
};
/** Every metric is dimensionless and lies in [0, 1] (docs/model.md section 5): the axes say so. */
export const METRIC_RANGE = '0–1';
/** Okabe–Ito colours: distinguishable with the common colour-vision deficiencies. */
export const METRIC_COLORS: Record<MetricName, string> = {
  resonanceStrength: '#0072b2',
  coherence: '#009e73',
  entropy: '#d55e00',
  locality: '#cc79a7',
  dominance: '#7a5c00',
};

// ---- line chart ----

export interface Series {
  name: string;
  color: string;
  dashed?: boolean;
  points: Array<[number, number]>;
}

export interface Marker {
  x: number;
  /** One or two letters drawn at the top. */
  label: string;
  color: string;
}

/** A line chart on a canvas that follows its CSS size (and devicePixelRatio); redraws at most once a frame. */
export class LineChart {
  series: Series[] = [];
  markers: Marker[] = [];
  /** Fixed x range (e.g. 0..maxSteps while a run is in progress); default the data's. */
  xRange: [number, number] | null = null;
  /** A horizontal reference line (the resonance target), or null. */
  target: number | null = null;
  private pending = false;
  private readonly ctx: CanvasRenderingContext2D;

  constructor(
    readonly canvas: HTMLCanvasElement,
    /**
     * `bounds`: the values the quantity can take (the axis never runs past them); `xLabel` names the x axis;
     * `yRange` fixes the y axis (else it follows the data), `yTicks` where its labelled lines go, `yLabel` names it.
     */
    private readonly opts: { minSpan?: number; bounds?: [number, number]; xLabel?: string; yRange?: [number, number]; yTicks?: number[]; yLabel?: string } = {},
  ) {
    const ctx = canvas.getContext('2d');
    if (!ctx) throw new Error('canvas 2D is not available');
    this.ctx = ctx;
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  /** Schedules a redraw on the next animation frame. */
  update(): void {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw(): void {
    const { canvas, ctx } = this;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, canvas.clientWidth);
    const h = Math.max(1, canvas.clientHeight);
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 44, r: 8, t: 14, b: 18 };
    const pw = Math.max(1, w - pad.l - pad.r);
    const ph = Math.max(1, h - pad.t - pad.b);

    let x0 = Infinity;
    let x1 = -Infinity;
    let y0 = Infinity;
    let y1 = -Infinity;
    for (const s of this.series) {
      for (const [x, y] of s.points) {
        if (!Number.isFinite(y)) continue;
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
    if (this.xRange) [x0, x1] = this.xRange;
    if (!Number.isFinite(x0)) [x0, x1] = [0, 1];
    if (x1 <= x0) x1 = x0 + 1;
    if (this.opts.yRange) [y0, y1] = this.opts.yRange;
    else {
      if (!Number.isFinite(y0)) [y0, y1] = [0, 1];
      if (this.target !== null) {
        y0 = Math.min(y0, this.target);
        y1 = Math.max(y1, this.target);
      }
      const minSpan = this.opts.minSpan ?? 0.02;
      if (y1 - y0 < minSpan) {
        const mid = (y0 + y1) / 2;
        y0 = mid - minSpan / 2;
        y1 = mid + minSpan / 2;
      }
      const margin = (y1 - y0) * 0.08;
      const [lo, hi] = this.opts.bounds ?? [-Infinity, Infinity];
      y0 = Math.max(lo, y0 - margin);
      y1 = Math.min(hi, y1 + margin);
    }
    canvas.dataset.yMin = String(y0);
    canvas.dataset.yMax = String(y1);
    const X = (x: number): number => pad.l + ((x - x0) / (x1 - x0)) * pw;
    const Y = (y: number): number => pad.t + (1 - (y - y0) / (y1 - y0)) * ph;

    const style = getComputedStyle(canvas);
    const fg = style.color || '#222';
    ctx.font = '11px system-ui, sans-serif';
    ctx.lineWidth = 1;
    // frame and grid
    ctx.strokeStyle = 'rgba(127,127,127,0.35)';
    ctx.strokeRect(pad.l + 0.5, pad.t + 0.5, pw - 1, ph - 1);
    ctx.fillStyle = fg;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    const ticks = this.opts.yTicks ?? [y0, (y0 + y1) / 2, y1];
    for (const y of ticks) {
      const py = Y(y);
      // Given ticks are round numbers, written as such (0, 0.5, 1); data-driven ones to three decimals.
      ctx.fillText(this.opts.yTicks ? String(y) : y.toFixed(3), pad.l - 4, py);
      ctx.beginPath();
      ctx.moveTo(pad.l, Math.round(py) + 0.5);
      ctx.lineTo(pad.l + pw, Math.round(py) + 0.5);
      ctx.stroke();
    }
    if (this.opts.yLabel) {
      // Along the left edge, reading upwards.
      ctx.save();
      ctx.translate(7, pad.t + ph / 2);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(this.opts.yLabel, 0, 0);
      ctx.restore();
    }
    ctx.textBaseline = 'top';
    ctx.textAlign = 'left';
    ctx.fillText(String(Math.round(x0)), pad.l, pad.t + ph + 3);
    ctx.textAlign = 'right';
    ctx.fillText(String(Math.round(x1)), pad.l + pw, pad.t + ph + 3);
    if (this.opts.xLabel) {
      ctx.textAlign = 'center';
      ctx.fillText(this.opts.xLabel, pad.l + pw / 2, pad.t + ph + 3);
    }

    // the target, dashed across the plot, labelled at its right end
    if (this.target !== null) {
      const py = Math.round(Y(this.target)) + 0.5;
      ctx.strokeStyle = fg;
      ctx.setLineDash([2, 3]);
      ctx.beginPath();
      ctx.moveTo(pad.l, py);
      ctx.lineTo(pad.l + pw, py);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.textAlign = 'right';
      ctx.textBaseline = 'bottom';
      ctx.fillText(`target ${this.target}`, pad.l + pw - 2, py - 1);
    }

    // markers (events) under the lines
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const m of this.markers) {
      if (m.x < x0 || m.x > x1) continue;
      const px = Math.round(X(m.x)) + 0.5;
      ctx.strokeStyle = m.color;
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(px, pad.t);
      ctx.lineTo(px, pad.t + ph);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = m.color;
      ctx.fillText(m.label, px, 1);
    }

    // series
    ctx.lineWidth = 1.75;
    ctx.lineJoin = 'round';
    for (const s of this.series) {
      ctx.strokeStyle = s.color;
      ctx.setLineDash(s.dashed ? [5, 4] : []);
      ctx.beginPath();
      let open = false;
      for (const [x, y] of s.points) {
        if (!Number.isFinite(y)) {
          open = false;
          continue;
        }
        if (open) ctx.lineTo(X(x), Y(y));
        else ctx.moveTo(X(x), Y(y));
        open = true;
      }
      ctx.stroke();
      if (s.points.length === 1) {
        const [x, y] = s.points[0]!;
        ctx.fillStyle = s.color;
        ctx.fillRect(X(x) - 2, Y(y) - 2, 4, 4);
      }
    }
    ctx.setLineDash([]);
  }
}

/**
 * Five charts, one per metric, in the element #<containerId>: each a <figure> with a caption that holds
 * the latest value (so the numbers are text, not only pixels) and a canvas with role="img".
 */
export class MetricCharts {
  readonly charts = new Map<MetricName, LineChart>();
  private readonly values = new Map<MetricName, HTMLElement>();

  constructor(container: HTMLElement, private readonly xName: string) {
    for (const m of METRICS) {
      const fig = document.createElement('figure');
      fig.className = 'chart';
      fig.dataset.metric = m;
      const cap = document.createElement('figcaption');
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.dataset.metric = m;
      const name = document.createElement('span');
      name.textContent = `${METRIC_LABELS[m]} (${METRIC_SYMBOLS[m]})`;
      const value = document.createElement('output');
      value.className = 'value';
      value.textContent = '—';
      cap.append(swatch, name, ' ', value);
      const canvas = document.createElement('canvas');
      canvas.setAttribute('role', 'img');
      canvas.setAttribute('aria-label', `${this.axisName(m)} over ${xName}: no data yet`);
      fig.append(cap, canvas);
      container.append(fig);
      // Every metric lies in [0, 1] (docs/model.md section 5): the whole range, always, so charts compare at a glance.
      this.charts.set(m, new LineChart(canvas, { bounds: [0, 1], yRange: [0, 1], yTicks: [0, 0.5, 1], yLabel: `${METRIC_SYMBOLS[m]} (${METRIC_RANGE})`, xLabel: xName }));
      this.values.set(m, value);
    }
  }

  /** Replace series and markers of every chart (series per metric from `pick`). */
  set(series: Array<{ name: string; dashed?: boolean; points: (m: MetricName) => Array<[number, number]> }>, markers: Marker[], xRange: [number, number] | null = null): void {
    for (const [m, chart] of this.charts) {
      chart.series = series.map((s) => ({ name: s.name, color: METRIC_COLORS[m], ...(s.dashed ? { dashed: true } : {}), points: s.points(m) }));
      chart.markers = markers;
      chart.xRange = xRange;
      chart.update();
    }
  }

  /** The resonance target r* on the chart of the metric it controls (resonanceStrength, or coherence for R_q); null clears it. */
  setTarget(metric: MetricName, value: number | null): void {
    for (const [m, chart] of this.charts) {
      const target = m === metric ? value : null;
      if (chart.target === target) continue;
      chart.target = target;
      if (target === null) delete chart.canvas.dataset.target;
      else chart.canvas.dataset.target = String(target);
      chart.update();
    }
  }

  /** The caption values (and the canvas's accessible description) from the latest sample. */
  setLatest(latest: Partial<Record<MetricName, number | null>>, at: number): void {
    for (const m of METRICS) {
      const v = latest[m];
      const text = fmt(v ?? null, 4);
      this.values.get(m)!.textContent = text;
      this.values.get(m)!.dataset.value = v === null || v === undefined ? '' : String(v);
      this.charts.get(m)!.canvas.setAttribute('aria-label', `${this.axisName(m)} over ${this.xName}: ${text} at ${this.xName} ${at}`);
    }
  }

  private axisName(m: MetricName): string {
    return `${METRIC_LABELS[m]} ${METRIC_SYMBOLS[m]} (dimensionless, 0 to 1)`;
  }
}

// ---- phase circle ----

/** `corotating`: drawn relative to the mass-weighted mean phase (which points along +x); `fixed`: as they are. */
export type PhaseFrame = 'corotating' | 'fixed';

export interface PhaseCircleOptions {
  /** Draggable markers (pointer) and focusable sliders (arrow keys); calls onShift with a shift in radians. */
  onShift?: (index: number, radians: number) => void;
  /** Accessible name of the whole figure. */
  label: string;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
const svg = <K extends keyof SVGElementTagNameMap>(name: K, attrs: Record<string, string | number> = {}): SVGElementTagNameMap[K] => {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
};

/** How far (in circle radii) from a marker's centre a pointer still grabs it: a large dot's radius and a little more. */
const GRAB_RADIUS = 0.2;
/** Half the viewBox: the unit circle plus room outside it for the labels. */
const VIEW = 1.5;
/** Label font size, and the radius their anchors sit at: just outside the largest dot (radius 0.145). */
const LABEL_FONT = 0.1;
const LABEL_RING = 1.19;
/** Space kept between two labels' boxes; the widest line a label may have, and the narrowest it is wrapped to. */
const LABEL_GAP = 0.02;
const LABEL_MAX_WIDTH = 1.4;
const LABEL_MIN_WIDTH = 0.3;
/** Above this many primes no labels are drawn: the ring would be one long list. */
const MAX_LABELLED = 40;

interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

const overlaps = (a: Box, b: Box): boolean =>
  a.left < b.left + b.width + LABEL_GAP && b.left < a.left + a.width + LABEL_GAP && a.top < b.top + b.height + LABEL_GAP && b.top < a.top + a.height + LABEL_GAP;

const clamp = (x: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, x));

let circles = 0;

/**
 * Primes on the unit circle, each marker's area proportional to its mass (relative to the largest), with
 * the mass-weighted mean phase vector from the centre (its length is the resonance strength r). By default
 * the drawing co-rotates with the mean phase: prime i sits at theta_i - mean, counter-clockwise from +x, so
 * the mean vector always points along +x and locked primes stand still; a toggle shows the fixed frame.
 * Labels of markers too close to label apart are one label listing their primes ("2, 3, 5").
 * In interactive mode every marker is a focusable slider: arrow keys shift it by 15° (Shift: 1°), Page
 * Up/Down by 90°; dragging it proposes the shift from where it was grabbed to where it is dropped. A shift
 * is a difference of angles, the same in either frame; the slider's value is always the true phase.
 */
export class PhaseCircle {
  readonly root: SVGSVGElement;
  private readonly markersLayer: SVGGElement;
  private readonly labelsLayer: SVGGElement;
  private readonly meanLine: SVGLineElement;
  private readonly ghost: SVGCircleElement;
  private readonly measurer: SVGTextElement;
  private readonly caption: HTMLElement;
  private readonly frameInputs: HTMLInputElement[] = [];
  private markers: SVGGElement[] = [];
  private labels: SVGTextElement[] = [];
  private primes: number[] = [];
  /** True phases in [0, 2pi), masses as given, and the angles drawn (phase minus the frame's rotation). */
  private phases: number[] = [];
  private masses: number[] = [];
  private angles: number[] = [];
  private meanPhase = 0;
  private frame: PhaseFrame = 'corotating';
  private readonly widths = new Map<string, number>();
  /** Line height and baseline offset of the label font, in circle units (measured once it is rendered). */
  private font: { line: number; ascent: number } | null = null;
  private lastAria = 0;
  private drag: { index: number; startAngle: number; pointerId: number } | null = null;

  constructor(container: HTMLElement, private readonly opts: PhaseCircleOptions) {
    const n = ++circles;
    this.root = svg('svg', { viewBox: `${-VIEW} ${-VIEW} ${2 * VIEW} ${2 * VIEW}`, class: 'phase-circle', role: 'group', 'aria-label': opts.label });
    const title = svg('title');
    title.textContent = opts.label;
    this.root.append(title);
    this.root.append(svg('circle', { cx: 0, cy: 0, r: 1, class: 'unit' }));
    this.root.append(svg('line', { x1: -1.1, y1: 0, x2: 1.1, y2: 0, class: 'axis' }));
    this.root.append(svg('line', { x1: 0, y1: -1.1, x2: 0, y2: 1.1, class: 'axis' }));
    this.meanLine = svg('line', { x1: 0, y1: 0, x2: 0, y2: 0, class: 'mean' });
    this.root.append(this.meanLine);
    this.ghost = svg('circle', { r: 0.08, class: 'ghost', visibility: 'hidden' });
    this.root.append(this.ghost);
    this.markersLayer = svg('g');
    this.labelsLayer = svg('g', { class: 'labels', 'aria-hidden': 'true' });
    this.measurer = svg('text', { class: 'label-measure', visibility: 'hidden', 'aria-hidden': 'true' });
    this.root.append(this.markersLayer, this.labelsLayer, this.measurer);

    // The frame, in words and as a toggle under the circle.
    const controls = document.createElement('div');
    controls.className = 'frame-controls';
    const fs = document.createElement('fieldset');
    fs.className = 'frame';
    const legend = document.createElement('legend');
    legend.textContent = 'Frame';
    fs.append(legend);
    for (const [value, text] of [['corotating', 'co-rotating'], ['fixed', 'fixed']] as const) {
      const label = document.createElement('label');
      const input = document.createElement('input');
      input.type = 'radio';
      input.name = `phase-frame-${n}`;
      input.value = value;
      input.checked = value === this.frame;
      input.addEventListener('change', () => {
        if (input.checked) this.setFrame(value);
      });
      label.append(input, ` ${text}`);
      fs.append(label);
      this.frameInputs.push(input);
    }
    this.caption = document.createElement('p');
    this.caption.className = 'frame-caption';
    this.caption.id = `phase-frame-caption-${n}`;
    this.root.setAttribute('aria-describedby', this.caption.id);
    controls.append(fs, this.caption);
    container.append(this.root, controls);
    this.describeFrame();
    if (opts.onShift) this.listen();
  }

  /** Draw this state; rebuilds the markers only when the basis changes (focus stays on its marker). */
  update(primes: readonly number[], phases: ArrayLike<number>, masses: ArrayLike<number>): void {
    if (primes.length !== this.primes.length || primes.some((p, i) => p !== this.primes[i])) this.rebuild(primes);
    const k = primes.length;
    this.phases = Array.from({ length: k }, (_, i) => wrap2pi(phases[i] ?? 0));
    this.masses = Array.from({ length: k }, (_, i) => masses[i] ?? 0);
    this.draw();
  }

  setFrame(frame: PhaseFrame): void {
    this.frame = frame;
    for (const input of this.frameInputs) input.checked = input.value === frame;
    this.draw();
  }

  /** Briefly highlights a marker (another viewer's change). */
  flash(index: number): void {
    const g = this.markers[index];
    if (!g) return;
    g.classList.remove('flash');
    void g.getBoundingClientRect();
    g.classList.add('flash');
  }

  private draw(): void {
    const k = this.phases.length;
    let maxMass = 0;
    let mx = 0;
    let my = 0;
    let total = 0;
    for (let i = 0; i < k; i++) {
      const mass = this.masses[i]!;
      maxMass = Math.max(maxMass, mass);
      mx += mass * Math.cos(this.phases[i]!);
      my += mass * Math.sin(this.phases[i]!);
      total += mass;
    }
    // With r = 0 the mean phase is undefined: the frame keeps its last rotation rather than jump.
    if (total > 0 && Math.hypot(mx, my) > 1e-12 * total) this.meanPhase = wrap2pi(Math.atan2(my, mx));
    const r = total > 0 ? Math.hypot(mx, my) / total : 0;
    const rotation = this.frame === 'corotating' ? this.meanPhase : 0;
    this.angles = this.phases.map((theta) => wrap2pi(theta - rotation));

    const now = performance.now();
    const aria = now - this.lastAria > 1000;
    if (aria) this.lastAria = now;
    for (let i = 0; i < k; i++) {
      const theta = this.phases[i]!;
      const angle = this.angles[i]!;
      const mass = this.masses[i]!;
      const rel = maxMass > 0 ? mass / maxMass : 0;
      const g = this.markers[i]!;
      g.setAttribute('transform', `translate(${Math.cos(angle).toFixed(4)} ${(-Math.sin(angle)).toFixed(4)})`);
      const dot = g.firstChild as SVGCircleElement;
      dot.setAttribute('r', (0.035 + 0.11 * Math.sqrt(rel)).toFixed(4));
      g.dataset.phase = String(theta);
      g.dataset.angle = String(angle);
      g.dataset.mass = String(mass);
      // The slider's value is the true phase, whatever the frame.
      if (aria || !g.hasAttribute('aria-valuenow')) {
        g.setAttribute('aria-valuenow', theta.toFixed(3));
        g.setAttribute('aria-valuetext', `${degrees(theta)}, mass ${mass.toFixed(3)}`);
      }
    }
    const meanAngle = this.meanPhase - rotation;
    this.meanLine.setAttribute('x2', (r * Math.cos(meanAngle)).toFixed(4));
    this.meanLine.setAttribute('y2', (-r * Math.sin(meanAngle)).toFixed(4));
    this.root.dataset.frame = this.frame;
    this.root.dataset.meanPhase = String(this.meanPhase);
    this.describeFrame();
    this.layoutLabels();
  }

  private describeFrame(): void {
    const mean = `${Math.round((this.meanPhase * 180) / Math.PI) % 360}°`;
    const text = this.frame === 'corotating'
      ? `Rotating with the mean phase (now ${mean}): the mean phase points right, so locked primes stand still.`
      : `Fixed frame: 0° points right, phases counter-clockwise (mean phase now ${mean}).`;
    if (this.caption.textContent !== text) this.caption.textContent = text;
  }

  private rebuild(primes: readonly number[]): void {
    this.primes = [...primes];
    this.markersLayer.replaceChildren();
    this.markers = primes.map((p, i) => {
      const g = svg('g', { class: 'marker', 'data-index': i, 'data-prime': p });
      g.append(svg('circle', { r: 0.05, class: 'dot', 'data-prime-class': i % 8 }));
      if (this.opts.onShift) {
        g.setAttribute('tabindex', '0');
        g.setAttribute('role', 'slider');
        g.setAttribute('aria-label', `Phase of prime ${p}`);
        g.setAttribute('aria-valuemin', '0');
        g.setAttribute('aria-valuemax', (2 * Math.PI).toFixed(3));
        g.setAttribute('aria-keyshortcuts', 'ArrowLeft ArrowRight ArrowUp ArrowDown PageUp PageDown');
      } else {
        const title = svg('title');
        title.textContent = `prime ${p}`;
        g.append(title);
      }
      this.markersLayer.append(g);
      return g;
    });
  }

  // ---- labels ----

  /** Width of a label line in circle units: measured once per text while the circle is rendered, else estimated. */
  private measure(text: string): number {
    const known = this.widths.get(text);
    if (known !== undefined) return known;
    this.measurer.textContent = text;
    const width = this.measurer.getComputedTextLength();
    if (!(width > 0)) return text.length * 0.62 * LABEL_FONT;
    if (this.widths.size > 2000) this.widths.clear();
    this.widths.set(text, width);
    return width;
  }

  /** The font's line box (ascent plus descent) and ascent, from the rendered measuring text; a guess before. */
  private fontBox(): { line: number; ascent: number } {
    if (this.font) return this.font;
    this.measurer.textContent = '0123456789';
    const box = this.measurer.getBBox();
    if (box.height > 0) this.font = { line: Math.max(1.15 * LABEL_FONT, box.height), ascent: -box.y };
    return this.font ?? { line: 1.3 * LABEL_FONT, ascent: 1.0 * LABEL_FONT };
  }

  /**
   * The lines of a cluster's label: its primes ascending, wrapped at `maxWidth`; past `maxLines` lines the
   * last one counts the rest ("+12 more").
   */
  private linesOf(primes: number[], maxWidth: number, maxLines: number): string[] {
    const lines: number[][] = [];
    let line: number[] = [];
    for (const p of primes) {
      if (line.length > 0 && this.measure(`${[...line, p].join(', ')},`) > maxWidth) {
        lines.push(line);
        line = [];
      }
      line.push(p);
    }
    lines.push(line);
    if (lines.length > maxLines) {
      const kept = lines.slice(0, maxLines - 1);
      const shown = kept.reduce((n, l) => n + l.length, 0);
      return [...kept.map((l) => `${l.join(', ')},`), `+${primes.length - shown} more`];
    }
    return lines.map((l, i) => `${l.join(', ')}${i < lines.length - 1 ? ',' : ''}`);
  }

  /**
   * Where a cluster's label goes: anchored just outside the circle at the members' mean angle, its box
   * pushed outward (right of the anchor on the right, above it at the top, smoothly between), wrapped to
   * the room left between the anchor and the edge of the view (narrow and tall at the sides, wide and
   * flat at the top and bottom), and kept inside the view.
   */
  private place(members: number[]): { lines: string[]; box: Box } {
    let sx = 0;
    let sy = 0;
    for (const i of members) {
      sx += Math.cos(this.angles[i]!);
      sy += Math.sin(this.angles[i]!);
    }
    const angle = Math.atan2(sy, sx);
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    // How far the box reaches outward from the anchor: all of it at the sides, half of it at the top.
    const hx = clamp(1.6 * c, -1, 1);
    const vy = clamp(1.6 * s, -1, 1);
    const room = VIEW - 0.02 - LABEL_RING;
    const roomX = (VIEW - 0.02 - LABEL_RING * Math.abs(c)) / ((1 + Math.abs(hx)) / 2);
    const roomY = (VIEW - 0.02 - LABEL_RING * Math.abs(s)) / ((1 + Math.abs(vy)) / 2);
    const font = this.fontBox();
    const maxWidth = clamp(roomX, Math.max(LABEL_MIN_WIDTH, room), LABEL_MAX_WIDTH);
    const maxLines = Math.max(2, Math.floor(roomY / font.line));
    const lines = this.linesOf(members.map((i) => this.primes[i]!).sort((a, b) => a - b), maxWidth, maxLines);
    const width = Math.max(...lines.map((l) => this.measure(l)));
    const height = lines.length * font.line;
    const left = clamp(LABEL_RING * c - (width * (1 - hx)) / 2, -VIEW + 0.01, VIEW - 0.01 - width);
    const top = clamp(-LABEL_RING * s - (height * (1 + vy)) / 2, -VIEW + 0.01, VIEW - 0.01 - height);
    return { lines, box: { left, top, width, height } };
  }

  /**
   * One label per cluster of markers. Every marker starts as its own cluster (in angular order); while two
   * labels' boxes overlap, the clusters between them (the shorter way round) become one, labelled with
   * all their primes. Ends with no two labels overlapping (one cluster cannot overlap itself).
   */
  private layoutLabels(): void {
    const k = this.primes.length;
    if (k > MAX_LABELLED || k === 0) {
      this.labelsLayer.replaceChildren();
      this.labels = [];
      return;
    }
    let clusters = [...Array(k).keys()].sort((a, b) => this.angles[a]! - this.angles[b]!).map((i) => [i]);
    let placed = clusters.map((c) => this.place(c));
    for (;;) {
      const n = clusters.length;
      let pair: [number, number] | null = null;
      // Neighbours first (the usual case), then any two (a long label reaching past its neighbour).
      for (let i = 0; i < n - 1 && !pair; i++) if (overlaps(placed[i]!.box, placed[i + 1]!.box)) pair = [i, i + 1];
      if (!pair && n > 2 && overlaps(placed[0]!.box, placed[n - 1]!.box)) pair = [0, n - 1];
      for (let i = 0; i < n && !pair; i++) for (let j = i + 2; j < n && !pair; j++) if (overlaps(placed[i]!.box, placed[j]!.box)) pair = [i, j];
      if (!pair) break;
      const [i, j] = pair;
      if (j - i + 1 <= n - (j - i) + 1) {
        clusters.splice(i, j - i + 1, clusters.slice(i, j + 1).flat());
      } else {
        // The short way round passes through angle 0: the clusters from j to the end, then from the start to i.
        clusters = [...clusters.slice(i + 1, j), [...clusters.slice(j).flat(), ...clusters.slice(0, i + 1).flat()]];
      }
      placed = clusters.map((c) => this.place(c));
    }

    const font = this.fontBox();
    while (this.labels.length > placed.length) this.labels.pop()!.remove();
    placed.forEach(({ lines, box }, c) => {
      let text = this.labels[c];
      if (!text) {
        text = svg('text', { class: 'label' });
        this.labelsLayer.append(text);
        this.labels.push(text);
      }
      const key = lines.join('\n');
      if (text.dataset.text !== key) {
        text.dataset.text = key;
        text.replaceChildren(...lines.map((l) => {
          const span = svg('tspan');
          span.textContent = l;
          return span;
        }));
      }
      text.dataset.primes = clusters[c]!.map((i) => this.primes[i]).join(' ');
      Array.from(text.children).forEach((span, row) => {
        span.setAttribute('x', box.left.toFixed(4));
        span.setAttribute('y', (box.top + font.ascent + row * font.line).toFixed(4));
      });
    });
  }

  // ---- pointer and keys ----

  /** The pointer in the circle's coordinates (the unit circle, y down): the drawing's frame. */
  private pointAt(ev: PointerEvent): DOMPoint {
    const m = this.root.getScreenCTM();
    return m ? new DOMPoint(ev.clientX, ev.clientY).matrixTransform(m.inverse()) : new DOMPoint(0, 0);
  }

  /** The pointer's angle in the drawing's frame: grab and drop are both measured here, so their difference is the shift. */
  private angleAt(ev: PointerEvent): number {
    const pt = this.pointAt(ev);
    return wrap2pi(Math.atan2(-pt.y, pt.x));
  }

  /**
   * The marker whose centre (as drawn) is nearest the pointer, within GRAB_RADIUS, or -1. Not the element
   * under the pointer: where markers overlap (phases close to locking) the topmost one would take the grab
   * even when the pointer is on another's centre.
   */
  private nearestMarker(ev: PointerEvent): number {
    const pt = this.pointAt(ev);
    let best = -1;
    let bestDistance = GRAB_RADIUS;
    for (let i = 0; i < this.angles.length; i++) {
      const angle = this.angles[i]!;
      const d = Math.hypot(pt.x - Math.cos(angle), pt.y + Math.sin(angle));
      if (d < bestDistance) {
        bestDistance = d;
        best = i;
      }
    }
    return best;
  }

  private listen(): void {
    const shift = this.opts.onShift!;
    const indexOf = (target: EventTarget | null): number => {
      const g = (target as Element | null)?.closest?.('.marker') as SVGGElement | null;
      return g ? Number(g.dataset.index) : -1;
    };
    this.root.addEventListener('keydown', (ev) => {
      const i = indexOf(ev.target);
      if (i < 0) return;
      const small = ev.shiftKey ? Math.PI / 180 : Math.PI / 12;
      const steps: Record<string, number> = {
        ArrowRight: small, ArrowUp: small, ArrowLeft: -small, ArrowDown: -small, PageUp: Math.PI / 2, PageDown: -Math.PI / 2,
      };
      const d = steps[ev.key];
      if (d === undefined) return;
      ev.preventDefault();
      shift(i, d);
    });
    this.root.addEventListener('pointerdown', (ev) => {
      const i = this.nearestMarker(ev);
      if (i < 0 || ev.button !== 0) return;
      ev.preventDefault();
      (this.markers[i] as SVGGElement).focus();
      this.root.setPointerCapture(ev.pointerId);
      this.drag = { index: i, startAngle: this.angleAt(ev), pointerId: ev.pointerId };
      this.moveGhost(this.angleAt(ev));
    });
    this.root.addEventListener('pointermove', (ev) => {
      if (this.drag?.pointerId === ev.pointerId) this.moveGhost(this.angleAt(ev));
    });
    const end = (ev: PointerEvent, commit: boolean): void => {
      if (this.drag?.pointerId !== ev.pointerId) return;
      const { index, startAngle } = this.drag;
      this.drag = null;
      this.ghost.setAttribute('visibility', 'hidden');
      const d = wrapPi(this.angleAt(ev) - startAngle);
      if (commit && Math.abs(d) > 1e-3) shift(index, d);
    };
    this.root.addEventListener('pointerup', (ev) => end(ev, true));
    this.root.addEventListener('pointercancel', (ev) => end(ev, false));
  }

  private moveGhost(angle: number): void {
    this.ghost.setAttribute('cx', Math.cos(angle).toFixed(4));
    this.ghost.setAttribute('cy', (-Math.sin(angle)).toFixed(4));
    this.ghost.setAttribute('visibility', 'visible');
  }
}
