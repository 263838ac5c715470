/** openapi.yaml, generated from the zod schemas of every router (npm run openapi writes the committed file). */
import { createDocument, type ZodOpenApiPathsObject } from 'zod-openapi';
import { stringify } from 'yaml';
import { hqePaths } from './routes/hqe.js';
import { oauthPaths } from './routes/oauth.js';
import { opsPaths } from './routes/ops.js';
import { spacesComponents, spacesPaths } from './routes/spaces.js';
import { clusterPaths } from './routes/cluster.js';
import { usagePaths } from './routes/usage.js';
import { webhookEventPaths, webhookPaths } from './routes/webhooks.js';

export function openApiDocument(): ReturnType<typeof createDocument> {
  const paths: ZodOpenApiPathsObject = { ...hqePaths, ...spacesPaths, ...webhookPaths, ...usagePaths, ...clusterPaths, ...oauthPaths, ...opsPaths };
  return createDocument({
    openapi: '3.1.0',
    info: {
      title: 'Resonance API',
      version: '1.0.0',
      description:
        'Prime-basis resonance simulations: HQE runs and sessions, and live shared Spaces. Errors are RFC 9457 problem+json with a stable `code`. ' +
        'Start here: send an API key as `X-Api-Key` (or a bearer token from POST /oauth/token) on every /v1 request; each costs one unit of the key\'s rate limit (X-RateLimit-* headers). ' +
        'Check an HQE config with POST /v1/hqe/validate, run it with POST /v1/hqe/run, or create a session that runs in the background and follow its stream. ' +
        'A space is a live simulation many clients share: create one, then mint a session token per client to join it over WebSocket or SSE. ' +
        'Additions to the original HQE API: `completed` status, `frequencyScale`, mixer `localityBias`/`learningRate`/`gammaMax`, ' +
        '`resonanceTarget.weights`, run `events`/`metrics`/`seed`/`status`, webhook list/get/delete, OAuth2 token endpoint, ops endpoints. ' +
        'Additions to the original Spaces API are marked "addition" in their descriptions (space status changes and deletion, members, ' +
        'snapshot `t`/`primes`/`masses`/`metrics`, the delta reply\'s `toVersion`, session tokens on REST).',
    },
    servers: [{ url: '/' }],
    tags: [
      { name: 'HQE', description: 'Validate and run HQE configs, synchronously or as stored sessions that run in the background.' },
      { name: 'Spaces', description: 'Live simulations shared by many clients: create, read, change and delete them.' },
      { name: 'Sessions', description: 'Join a space: session tokens for WebSocket, SSE and REST, and the members they make.' },
      { name: 'State', description: 'A space\'s simulated state: snapshots, and deltas that change it.' },
      { name: 'Telemetry', description: 'Follow a simulation: HQE snapshots and streams, space telemetry (Server-Sent Events).' },
      { name: 'Webhooks', description: 'Signed HTTP callbacks for HQE and space events.' },
      { name: 'Usage', description: 'What the org has used, and its quotas.' },
      { name: 'Cluster', description: 'Which node runs what.' },
      { name: 'Auth', description: 'OAuth2 access tokens.' },
      { name: 'Ops', description: 'Health, readiness and metrics for operators; no API key.' },
    ],
    security: [{ ApiKeyAuth: [] }, { OAuth2CC: ['hqe.read', 'hqe.write'] }],
    components: {
      securitySchemes: {
        ApiKeyAuth: { type: 'apiKey', in: 'header', name: 'X-Api-Key' },
        OAuth2CC: {
          type: 'oauth2',
          flows: {
            clientCredentials: {
              tokenUrl: '/oauth/token',
              scopes: {
                'hqe.read': 'Read HQE state and telemetry', 'hqe.write': 'Run HQE simulations',
                'spaces.read': 'Read spaces, snapshots, telemetry and members; open reader sessions', 'spaces.write': 'Create and change spaces, propose deltas, open writer/admin/owner sessions',
              },
            },
          },
        },
        SpaceSession: {
          type: 'http', scheme: 'bearer', bearerFormat: 'JWT',
          description: 'Session token from POST /v1/spaces/{id}/sessions: valid only on that space\'s routes, with the role it was minted with.',
        },
        SpaceSessionQuery: { type: 'apiKey', in: 'query', name: 'token', description: 'The session token as ?token= (GET /v1/spaces/{id}/telemetry only).' },
      },
      schemas: spacesComponents,
    },
    paths,
    webhooks: webhookEventPaths,
  });
}

export function openApiYaml(): string {
  return stringify(openApiDocument(), { aliasDuplicateObjects: false, lineWidth: 0 });
}
