/**
 * The space viewer: create a space (the demo-room defaults) or join one by id, then a live phase
 * circle (the `phases` subscription) and telemetry charts at the space's publishHz. Dragging a marker, or
 * the arrow keys on a focused one, proposes a `shift_phase` delta; every delta, conflict and event lands in
 * the log; the readout shows the version and the round trip from proposeDelta to its resolution.
 */
import { applyPhaseOps, ConflictError, type Delta, type LiveSession, type Phases, type ResonanceClient, type SpaceEvent, type SpaceSnapshot, type Telemetry } from '@resonance/sdk';
import { $, apiKeyField, clientOrSay, degrees, errorText, type Marker, MetricCharts, PhaseCircle, say } from './common.js';

/** What "Create and join" sets besides the form's fields (the demo-room defaults); the page says so in words. */
const DEMO_ROOM = {
  phases: { golden: true, silver: true },
  operators: { resonanceTarget: 0.85 },
  entropy: { lambda: 0.03, collapseThreshold: 0.96 },
};

const WINDOW = 300;
const LOG_MAX = 200;

let getKey: () => string = () => '';
let api: ResonanceClient | null = null;
let session: LiveSession | null = null;
let frame: Phases | null = null;
let primes: number[] = [];
/** Deltas newer than the last phases frame may hold: applied on top of it when drawing. */
let recent: Delta[] = [];
let samples: Telemetry[] = [];
let markers: Marker[] = [];
let latencies: number[] = [];
let epoch = -1;
const names = new Map<string, string>();
let charts: MetricCharts;
let circle: PhaseCircle;
let paintPending = false;

// ---- log ----

function log(text: string, kind: 'delta' | 'mine' | 'conflict' | 'event' | 'error' | 'info' = 'info'): void {
  const list = $<HTMLOListElement>('log');
  const li = document.createElement('li');
  li.dataset.kind = kind;
  const time = document.createElement('time');
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString();
  li.append(time, ' ', text);
  list.prepend(li);
  while (list.children.length > LOG_MAX) list.lastElementChild!.remove();
}

function who(author: string | null): string {
  if (!author) return 'the server';
  if (session && author === session.sessionId) return 'you';
  return names.get(author) ?? author.slice(0, 12);
}

function describeOps(ops: Delta['ops']): string {
  return ops
    .map((op) => {
      const m = /^\/state\/phases\/(\d+)$/.exec(op.path);
      if (m) {
        const i = Number(m[1]);
        const p = primes[i] ?? `#${i}`;
        const v = op.value as number;
        return op.op === 'shift_phase' ? `shift prime ${p} by ${v >= 0 ? '+' : ''}${degrees(v)}` : `set prime ${p} to ${degrees(v)}`;
      }
      return `${op.op} ${op.path} = ${JSON.stringify(op.value)}`;
    })
    .join('; ');
}

// ---- drawing ----

function paint(): void {
  if (paintPending) return;
  paintPending = true;
  requestAnimationFrame(() => {
    paintPending = false;
    drawCircle();
    drawCharts();
  });
}

/** The latest phases frame with the deltas it does not hold yet applied (as the server will apply them). */
function currentPhases(): { phases: number[]; masses: number[]; t: number; version: number } | null {
  const snap = session?.snapshot;
  const base = frame ?? (snap ? { phases: snap.state.phases, masses: snap.state.masses, version: snap.version, t: snap.t } : null);
  if (!base) return null;
  const phases = [...base.phases];
  let version = base.version;
  for (const d of recent) {
    if (d.toVersion <= base.version) continue;
    version = Math.max(version, d.toVersion);
    applyPhaseOps(phases, d.ops);
  }
  return { phases, masses: [...base.masses], t: base.t, version };
}

function drawCircle(): void {
  const state = currentPhases();
  if (!state || primes.length === 0) return;
  circle.update(primes, state.phases, state.masses);
  const el = $('circle');
  el.dataset.t = String(state.t);
  el.dataset.version = String(state.version);
}

function drawCharts(): void {
  const win = samples;
  charts.set([{ name: 'telemetry', points: (m) => win.map((s) => [s.t, s[m] ?? NaN] as [number, number]) }], markers);
  const last = win[win.length - 1];
  if (last) charts.setLatest(last, last.t);
}

function readout(): void {
  const v = $('version');
  v.textContent = session ? String(session.version) : '—';
  v.dataset.version = String(session?.version ?? -1);
  $('conn').textContent = session ? `${session.state}${session.state === 'open' ? ` (${session.encoding}, ${session.role})` : ''}` : 'not connected';
  const l = $('latency');
  if (latencies.length === 0) l.textContent = '—';
  else {
    const sorted = [...latencies].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    const last = latencies[latencies.length - 1]!;
    l.textContent = `last ${last.toFixed(0)} ms, median ${median.toFixed(0)} ms over ${latencies.length}`;
    l.dataset.last = String(last);
  }
}

// ---- session ----

function reset(): void {
  frame = null;
  primes = [];
  recent = [];
  samples = [];
  markers = [];
  latencies = [];
  epoch = -1;
  names.clear();
}

async function refreshMembers(spaceId: string): Promise<void> {
  if (!api) return;
  try {
    const { items } = await api.spaces.members(spaceId);
    for (const m of items) if (m.displayName) names.set(m.id, m.displayName);
    $('members').textContent = items.map((m) => m.displayName ?? m.id.slice(0, 12)).join(', ') || '—';
  } catch {
    // a reader key without the members route: names stay ids
  }
}

function takeSnapshot(s: SpaceSnapshot): void {
  // A new epoch (basis change) starts t at 0 again: the charts start over.
  if (s.epoch !== epoch) {
    samples = [];
    markers = [];
    epoch = s.epoch;
  }
  primes = [...s.state.primes];
  // A space's resonance operator is R: its target on the resonance-strength chart.
  charts.setTarget('resonanceStrength', s.state.operators.resonanceTarget);
  frame = { t: s.t, version: s.version, phases: [...s.state.phases], masses: [...s.state.masses] };
  recent = recent.filter((d) => d.toVersion > s.version);
}

async function join(spaceId: string): Promise<void> {
  const status = $('status');
  if (session) leave();
  const made = clientOrSay(getKey(), status);
  if (!made) return;
  api = made;
  reset();
  say(status, `Joining ${spaceId}…`);
  const role = $<HTMLSelectElement>('role').value as 'writer' | 'reader';
  const displayName = $<HTMLInputElement>('display-name').value.trim();
  try {
    const s = await api.sessions.open(spaceId, {
      role,
      ...(displayName ? { displayName } : {}),
      subscribe: ['telemetry', 'deltas', 'events', 'phases'],
    });
    session = s;
    if (s.snapshot) takeSnapshot(s.snapshot);
    s.on('snapshot', (snap) => {
      takeSnapshot(snap);
      log(`snapshot at version ${snap.version} (epoch ${snap.epoch})`, 'info');
      readout();
      paint();
    });
    s.on('phases', (f) => {
      frame = f;
      recent = recent.filter((d) => d.toVersion > f.version);
      paint();
    });
    s.on('telemetry', (t) => {
      samples.push(t);
      if (samples.length > WINDOW) samples.splice(0, samples.length - WINDOW);
      const first = samples[0]!.t;
      markers = markers.filter((m) => m.x >= first);
      $('engine-version').textContent = String(t.version);
      $('tick').textContent = String(t.t);
      paint();
    });
    s.on('delta', (d) => {
      recent.push(d);
      const mine = d.author === s.sessionId;
      log(`v${d.toVersion}: ${who(d.author)} ${describeOps(d.ops)}`, mine ? 'mine' : 'delta');
      markers.push({ x: samples[samples.length - 1]?.t ?? 0, label: 'Δ', color: '#555555' });
      if (!mine) {
        for (const op of d.ops) {
          const m = /^\/state\/phases\/(\d+)$/.exec(op.path);
          if (m) circle.flash(Number(m[1]));
        }
      }
      const target = d.ops.find((op) => op.path === '/state/operators/resonanceTarget');
      if (target && typeof target.value === 'number') charts.setTarget('resonanceStrength', target.value);
      readout();
      paint();
    });
    s.on('conflict', (c) => {
      log(`conflict (${c.code}): ${c.detail} — based on v${c.expectedFrom}, the space is at v${c.actual}`, 'conflict');
    });
    s.on('event', (e: SpaceEvent) => {
      if (e.name === 'plateau' || e.name === 'collapse') {
        markers.push({ x: samples[samples.length - 1]?.t ?? 0, label: e.name === 'plateau' ? 'P' : 'X', color: e.name === 'plateau' ? '#d55e00' : '#b00020' });
        log(`event: ${e.name}`, 'event');
      } else if (e.name === 'member.joined' || e.name === 'member.left') {
        const id = String(e.data.memberId ?? '');
        if (e.name === 'member.joined' && typeof e.data.displayName === 'string') names.set(id, e.data.displayName);
        log(`${who(id)} ${e.name === 'member.joined' ? 'joined' : 'left'}`, 'event');
        void refreshMembers(s.spaceId);
      } else log(`event: ${e.name}`, 'event');
    });
    // The connection shows in the status line too: red while it is lost, green again (the old error cleared) once back.
    let lost = false;
    s.on('state', (state) => {
      readout();
      if (session !== s) return;
      if (state === 'reconnecting' && !lost) {
        lost = true;
        say(status, 'Connection lost: reconnecting…', 'error');
        log('connection lost', 'error');
      } else if (state === 'open' && lost) {
        lost = false;
        say(status, `Reconnected at version ${s.version}.`, 'ok');
        log(`reconnected at version ${s.version}`, 'info');
      } else if (state === 'closed') {
        say(status, 'Disconnected: the session ended. Join again to continue.', 'error');
      }
    });
    s.on('error', (err) => log(`error: ${errorText(err)}`, 'error'));

    $('space-id').textContent = s.spaceId;
    const share = $<HTMLAnchorElement>('share');
    share.href = `/demo/space#space=${encodeURIComponent(s.spaceId)}`;
    share.hidden = false;
    history.replaceState(null, '', `#space=${encodeURIComponent(s.spaceId)}`);
    $<HTMLInputElement>('j-id').value = s.spaceId;
    $<HTMLButtonElement>('leave').disabled = false;
    document.body.dataset.joined = 'true';
    say(status, `Joined ${s.spaceId} as ${s.role} at version ${s.version}.${s.role === 'reader' ? ' Readers watch only.' : ''}`, 'ok');
    log(`joined as ${s.role} at version ${s.version}`, 'info');
    void refreshMembers(s.spaceId);
    readout();
    paint();
  } catch (err) {
    session = null;
    say(status, `Could not join: ${errorText(err)}`, 'error');
  }
}

function leave(): void {
  session?.close();
  session = null;
  document.body.dataset.joined = 'false';
  $<HTMLButtonElement>('leave').disabled = true;
  say($('status'), 'Left the space.');
  readout();
}

/** A marker moved (drag or keys): propose the shift and time the round trip. */
function propose(index: number, radians: number): void {
  const s = session;
  const status = $('status');
  if (!s) return;
  if (s.role === 'reader') {
    say(status, 'Readers cannot move phases: join as a writer.', 'error');
    return;
  }
  const started = performance.now();
  s.proposeDelta({ fromVersion: s.version, ops: [{ op: 'shift_phase', path: `/state/phases/${index}`, value: radians }] }).then(
    (version) => {
      latencies.push(performance.now() - started);
      if (latencies.length > 50) latencies.shift();
      say(status, `Shift of prime ${primes[index]} accepted as version ${version}.`, 'ok');
      readout();
    },
    (err: unknown) => {
      if (err instanceof ConflictError) log(`your shift of prime ${primes[index]} was refused (${err.code}); the view is refreshed`, 'conflict');
      else log(`your shift of prime ${primes[index]} failed: ${errorText(err)}`, 'error');
      say(status, `Shift refused: ${errorText(err)}`, 'error');
    },
  );
}

function init(): void {
  getKey = apiKeyField();
  charts = new MetricCharts($('charts'), 'tick');
  circle = new PhaseCircle($('circle'), { label: 'Phases of the space on the unit circle', onShift: propose });
  $('c-defaults').textContent = `Also set: golden and silver seeding; coupling grows until r = ${DEMO_ROOM.operators.resonanceTarget}; `
    + `mass rate lambda = ${DEMO_ROOM.entropy.lambda}; collapse at ${Math.round(DEMO_ROOM.entropy.collapseThreshold * 100)}% of the mass in one prime.`;
  $('key-form').addEventListener('submit', (ev) => ev.preventDefault());
  $('create-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    void (async () => {
      const status = $('status');
      const made = clientOrSay(getKey(), status);
      if (!made) return;
      api = made;
      const primesText = $<HTMLInputElement>('c-primes').value;
      const hz = $<HTMLInputElement>('c-hz').value.trim();
      say(status, 'Creating the space…');
      try {
        const space = await api.spaces.create({
          name: $<HTMLInputElement>('c-name').value.trim() || 'demo-room',
          basis: { primes: primesText.split(/[\s,;]+/).filter(Boolean).map(Number), cutoff: 1024 },
          ...DEMO_ROOM,
          ...(hz ? { policy: { publishHz: Number(hz) } } : {}),
        });
        log(`created space ${space.name} (${space.id})`, 'info');
        await join(space.id);
      } catch (err) {
        say(status, `Could not create the space: ${errorText(err)}`, 'error');
      }
    })();
  });
  $('join-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = $<HTMLInputElement>('j-id').value.trim();
    if (!id) {
      say($('status'), 'Enter a space id to join.', 'error');
      $('j-id').focus();
      return;
    }
    void join(id);
  });
  $('leave').addEventListener('click', () => leave());
  const fromHash = /(?:^|[#&])space=([^&]+)/.exec(location.hash);
  if (fromHash) $<HTMLInputElement>('j-id').value = decodeURIComponent(fromHash[1]!);
  readout();
  document.body.dataset.ready = 'true';
}

init();
