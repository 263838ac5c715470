/**
 * `GET /v1/cluster` (docs/scaling.md): the nodes, and for the caller's org which node simulates each of its
 * live spaces and running HQE sessions, under which lease epoch. Any org credential with a read scope. A
 * single process answers the same way, with itself as the only node.
 */
import Router from '@koa/router';
import { z } from 'zod';
import type { ZodOpenApiPathsObject } from 'zod-openapi';
import type { ClusterStore, Lease } from '../../store/leases.js';
import { orgPrincipal } from '../org-principal.js';
import { authProblems, jsonResponse, RateLimitHeaders } from '../schemas.js';
import * as ex from '../openapi-examples.js';

export interface ClusterDeps {
  cluster: ClusterStore;
  nodeId: () => string;
  leaseTtlMs: number;
}

const Owned = (idName: string) =>
  z.object({
    [idName]: z.string(),
    node: z.string().meta({ description: 'The node that simulates it.' }),
    leaseEpoch: z.number().int().meta({ description: 'Fencing epoch of its lease: +1 each time it changed hands.' }),
    leaseExpiresAt: z.string().meta({ format: 'date-time', description: 'When the lease lapses unless its node renews it.' }),
  });

export const ClusterView = z
  .object({
    node: z.string().meta({ description: 'The node that answered (also in the X-Resonance-Node header).' }),
    leaseTtlMs: z.number().int().meta({ description: 'How long a lease outlives its last renewal: the longest a space or session waits for a new owner.' }),
    nodes: z
      .array(
        z.object({
          id: z.string(),
          url: z.string().meta({ description: 'Where the other nodes reach it.' }),
          startedAt: z.string().meta({ format: 'date-time' }),
          lastHeartbeatAt: z.string().meta({ format: 'date-time' }),
        }),
      )
      .meta({ description: 'Nodes heard from within three lease TTLs, oldest first.' }),
    spaces: z.array(Owned('spaceId')).meta({ description: "The org's live spaces (in some node's engine)." }),
    sessions: z.array(Owned('sessionId')).meta({ description: "The org's running HQE sessions." }),
  })
  .meta({ id: 'ClusterView', description: 'Nodes and ownership.' });

const iso = (ms: number): string => new Date(ms).toISOString();
const owned = (l: Lease) => ({ node: l.nodeId, leaseEpoch: l.epoch, leaseExpiresAt: iso(l.expiresAt) });

export function clusterRoutes(deps: ClusterDeps): Router {
  const router = new Router();
  router.get('/v1/cluster', async (ctx) => {
    const { orgId } = orgPrincipal(ctx, 'reading the cluster');
    const [nodes, leases] = await Promise.all([deps.cluster.nodes(3 * deps.leaseTtlMs), deps.cluster.orgLeases(orgId)]);
    ctx.body = {
      node: deps.nodeId(),
      leaseTtlMs: deps.leaseTtlMs,
      nodes: nodes.map((n) => ({ id: n.id, url: n.url, startedAt: iso(n.startedAt), lastHeartbeatAt: iso(n.heartbeatAt) })),
      spaces: leases.filter((l) => l.resource.startsWith('space:')).map((l) => ({ spaceId: l.resource.slice('space:'.length), ...owned(l) })),
      sessions: leases.filter((l) => l.resource.startsWith('session:')).map((l) => ({ sessionId: l.resource.slice('session:'.length), ...owned(l) })),
    } satisfies z.input<typeof ClusterView>;
  });
  return router;
}

export const clusterPaths: ZodOpenApiPathsObject = {
  '/v1/cluster': {
    get: {
      tags: ['Cluster'], operationId: 'getCluster',
      summary: "The nodes, and which node owns each of the caller's org's live spaces and running HQE sessions (addition; any org credential with hqe.read or spaces.read)",
      description:
        'The nodes serving the API and, for the caller\'s org only, which node simulates each live space and running HQE session under which lease (an API key or OAuth token with hqe.read or spaces.read). ' +
        'Any node answers for all of them; a single process lists itself. Useful to see where work runs and how a failover moved it (leaseEpoch).',
      responses: {
        '200': { description: 'Cluster view', headers: RateLimitHeaders, ...jsonResponse(ClusterView, { one: { summary: 'One node, one live space, one running session', value: ex.clusterView } }) },
        ...authProblems,
      },
    },
  },
};
