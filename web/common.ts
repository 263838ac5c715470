/**
 * Shared pieces of the demo pages: the API key field (kept in localStorage), the SDK client for this
 * origin, status messages, and two hand-rolled views: a canvas line chart (one metric per chart, several
 * series, event markers) and an SVG phase circle (markers on the unit circle sized by mass; optionally
 * draggable and keyboard-operable). No chart library: the drawing is about 300 lines and has no
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
    /** `bounds`: the values the quantity can take (the axis never runs past them); `xLabel` names the x axis. */
    private readonly opts: { minSpan?: number; bounds?: [number, number]; xLabel?: string } = {},
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
    for (const f of [0, 0.5, 1]) {
      const y = y0 + f * (y1 - y0);
      const py = Y(y);
      ctx.fillText(y.toFixed(3), pad.l - 4, py);
      ctx.beginPath();
      ctx.moveTo(pad.l, Math.round(py) + 0.5);
      ctx.lineTo(pad.l + pw, Math.round(py) + 0.5);
      ctx.stroke();
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
      name.textContent = METRIC_LABELS[m];
      const value = document.createElement('output');
      value.className = 'value';
      value.textContent = '—';
      cap.append(swatch, name, ' ', value);
      const canvas = document.createElement('canvas');
      canvas.setAttribute('role', 'img');
      canvas.setAttribute('aria-label', `${METRIC_LABELS[m]} over ${xName}: no data yet`);
      fig.append(cap, canvas);
      container.append(fig);
      // Every metric lies in [0, 1] (docs/model.md section 5).
      this.charts.set(m, new LineChart(canvas, { bounds: [0, 1], xLabel: xName }));
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
      this.charts.get(m)!.canvas.setAttribute('aria-label', `${METRIC_LABELS[m]} over ${this.xName}: ${text} at ${this.xName} ${at}`);
    }
  }
}

// ---- phase circle ----

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

/**
 * Primes on the unit circle at their phases (counter-clockwise from +x), each marker's area proportional
 * to its mass (relative to the largest), with the mass-weighted mean phase vector from the centre. In
 * interactive mode every marker is a focusable slider: arrow keys shift it by 15° (Shift: 1°), Page
 * Up/Down by 90°; dragging it proposes the shift from where it was grabbed to where it is dropped.
 */
export class PhaseCircle {
  readonly root: SVGSVGElement;
  private readonly markersLayer: SVGGElement;
  private readonly meanLine: SVGLineElement;
  private readonly ghost: SVGCircleElement;
  private markers: SVGGElement[] = [];
  private primes: number[] = [];
  private phases: number[] = [];
  private lastAria = 0;
  private drag: { index: number; startAngle: number; pointerId: number } | null = null;

  constructor(container: HTMLElement, private readonly opts: PhaseCircleOptions) {
    this.root = svg('svg', { viewBox: '-1.35 -1.35 2.7 2.7', class: 'phase-circle', role: 'group', 'aria-label': opts.label });
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
    this.root.append(this.markersLayer);
    container.append(this.root);
    if (opts.onShift) this.listen();
  }

  /** Draw this state; rebuilds the markers only when the basis changes (focus stays on its marker). */
  update(primes: readonly number[], phases: ArrayLike<number>, masses: ArrayLike<number>): void {
    if (primes.length !== this.primes.length || primes.some((p, i) => p !== this.primes[i])) this.rebuild(primes);
    const k = primes.length;
    let maxMass = 0;
    for (let i = 0; i < k; i++) maxMass = Math.max(maxMass, masses[i] ?? 0);
    let mx = 0;
    let my = 0;
    let total = 0;
    const now = performance.now();
    const aria = now - this.lastAria > 1000;
    if (aria) this.lastAria = now;
    this.phases = Array.from({ length: k }, (_, i) => wrap2pi(phases[i] ?? 0));
    for (let i = 0; i < k; i++) {
      const theta = this.phases[i]!;
      const mass = masses[i] ?? 0;
      const rel = maxMass > 0 ? mass / maxMass : 0;
      const x = Math.cos(theta);
      const y = -Math.sin(theta);
      mx += mass * Math.cos(theta);
      my += mass * Math.sin(theta);
      total += mass;
      const g = this.markers[i]!;
      g.setAttribute('transform', `translate(${x.toFixed(4)} ${y.toFixed(4)})`);
      const dot = g.firstChild as SVGCircleElement;
      dot.setAttribute('r', (0.035 + 0.11 * Math.sqrt(rel)).toFixed(4));
      g.dataset.phase = String(theta);
      g.dataset.mass = String(mass);
      if (aria || !g.hasAttribute('aria-valuenow')) {
        g.setAttribute('aria-valuenow', theta.toFixed(3));
        g.setAttribute('aria-valuetext', `${degrees(theta)}, mass ${mass.toFixed(3)}`);
      }
    }
    if (total > 0) {
      this.meanLine.setAttribute('x2', (mx / total).toFixed(4));
      this.meanLine.setAttribute('y2', (-my / total).toFixed(4));
    }
  }

  /** Briefly highlights a marker (another viewer's change). */
  flash(index: number): void {
    const g = this.markers[index];
    if (!g) return;
    g.classList.remove('flash');
    void g.getBoundingClientRect();
    g.classList.add('flash');
  }

  private rebuild(primes: readonly number[]): void {
    this.primes = [...primes];
    this.markersLayer.replaceChildren();
    const labels = primes.length <= 40;
    this.markers = primes.map((p, i) => {
      const g = svg('g', { class: 'marker', 'data-index': i, 'data-prime': p });
      g.append(svg('circle', { r: 0.05, class: 'dot', 'data-prime-class': i % 8 }));
      if (labels) {
        const t = svg('text', { x: 0, y: -0.12, class: 'label' });
        t.textContent = String(p);
        g.append(t);
      }
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

  /** The pointer in the circle's coordinates (the unit circle, y down). */
  private pointAt(ev: PointerEvent): DOMPoint {
    const m = this.root.getScreenCTM();
    return m ? new DOMPoint(ev.clientX, ev.clientY).matrixTransform(m.inverse()) : new DOMPoint(0, 0);
  }

  private angleAt(ev: PointerEvent): number {
    const pt = this.pointAt(ev);
    return wrap2pi(Math.atan2(-pt.y, pt.x));
  }

  /**
   * The marker whose centre is nearest the pointer, within GRAB_RADIUS, or -1. Not the element under the
   * pointer: where markers overlap (phases close to locking) the topmost one would take the grab even when
   * the pointer is on another's centre.
   */
  private nearestMarker(ev: PointerEvent): number {
    const pt = this.pointAt(ev);
    let best = -1;
    let bestDistance = GRAB_RADIUS;
    for (let i = 0; i < this.phases.length; i++) {
      const theta = this.phases[i]!;
      const d = Math.hypot(pt.x - Math.cos(theta), pt.y + Math.sin(theta));
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

  private moveGhost(theta: number): void {
    this.ghost.setAttribute('cx', Math.cos(theta).toFixed(4));
    this.ghost.setAttribute('cy', (-Math.sin(theta)).toFixed(4));
    this.ghost.setAttribute('visibility', 'visible');
  }
}
