/** Prometheus metrics of one server: HTTP traffic, engine throughput, residency and queue depths. */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { StoreStats } from '../store/store.js';

export interface MetricSources {
  simSteps: () => number;
  residentSessions: () => number;
  residentRuns: () => number;
  webhookQueueDepth: () => Promise<number>;
  /** Spaces in the engine, and those ticking (someone listens). */
  spaces: () => { resident: number; live: number };
  realtimeConnections: () => number;
  storeStats: () => StoreStats;
  /** Usage metered by this process since it started, per org and metric (docs/tenancy.md). */
  usage: () => Array<{ orgId: string; metric: string; value: number }>;
}

/** Counts one answered request: `route` is the matched route pattern (bounded label cardinality), not the raw path. */
export type RecordRequest = (method: string, route: string, status: number, seconds: number) => void;

export function createMetrics(sources: MetricSources): { registry: Registry; record: RecordRequest } {
  const registry = new Registry();
  const requests = new Counter({ name: 'resonance_http_requests_total', help: 'HTTP requests', labelNames: ['method', 'route', 'status'], registers: [registry] });
  const latency = new Histogram({
    name: 'resonance_http_request_duration_seconds', help: 'HTTP request latency', labelNames: ['method', 'route'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registers: [registry],
  });
  new Gauge({ name: 'resonance_resident_sessions', help: 'Running HQE sessions in the engine', registers: [registry], collect() { this.set(sources.residentSessions()); } });
  new Gauge({ name: 'resonance_resident_runs', help: 'HQE runs in the engine', registers: [registry], collect() { this.set(sources.residentRuns()); } });
  new Gauge({ name: 'resonance_resident_spaces', help: 'Spaces in the engine', registers: [registry], collect() { this.set(sources.spaces().resident); } });
  new Gauge({ name: 'resonance_live_spaces', help: 'Spaces ticking at their publishHz (someone listens)', registers: [registry], collect() { this.set(sources.spaces().live); } });
  new Gauge({ name: 'resonance_realtime_connections', help: 'Open WebSocket connections', registers: [registry], collect() { this.set(sources.realtimeConnections()); } });
  new Gauge({
    name: 'resonance_webhook_queue_depth', help: 'Webhook deliveries pending', registers: [registry],
    async collect() {
      this.set(await sources.webhookQueueDepth());
    },
  });
  const total = (name: string, help: string, read: () => number): void =>
    void new Counter({
      name, help, registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  total('resonance_engine_sim_steps_total', 'Simulation steps advanced by the engine', () => sources.simSteps());
  total('resonance_store_fsyncs_total', 'fsyncs of the store WAL (each covers every commit before it)', () => sources.storeStats().syncs);
  total('resonance_store_fsync_failures_total', 'fsyncs of the store WAL that failed', () => sources.storeStats().failures);
  total('resonance_store_checkpoints_total', 'WAL checkpoints run off the event loop', () => sources.storeStats().checkpoints);
  total('resonance_store_wal_truncations_total', 'Checkpoints that truncated an idle WAL file to zero bytes', () => sources.storeStats().truncations);
  new Counter({
    name: 'resonance_usage_total', help: 'Usage metered per org since this process started (GET /v1/usage has the durable history)', labelNames: ['org', 'metric'], registers: [registry],
    collect() {
      this.reset();
      for (const u of sources.usage()) this.inc({ org: u.orgId, metric: u.metric }, u.value);
    },
  });
  // Children bound to their label values, one per (method, route[, status]): prom-client hashes the label
  // object on every unbound call, on the path of every request.
  const latencyOf = new Map<string, Histogram.Internal<string>>();
  const requestsOf = new Map<string, Counter.Internal>();
  const record = (method: string, route: string, status: number, seconds: number): void => {
    const key = `${method} ${route}`;
    let observed = latencyOf.get(key);
    if (!observed) latencyOf.set(key, (observed = latency.labels({ method, route })));
    observed.observe(seconds);
    const statusKey = `${key} ${status}`;
    let counted = requestsOf.get(statusKey);
    if (!counted) requestsOf.set(statusKey, (counted = requests.labels({ method, route, status: String(status) })));
    counted.inc();
  };
  return { registry, record };
}
