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
        'Additions to the original HQE API: `completed` status, `frequencyScale`, mixer `localityBias`/`learningRate`/`gammaMax`, ' +
        '`resonanceTarget.weights`, run `events`/`metrics`/`seed`/`status`, webhook list/get/delete, OAuth2 token endpoint, ops endpoints. ' +
        'Additions to the original Spaces API are marked "addition" in their descriptions (space status changes and deletion, members, ' +
        'snapshot `t`/`primes`/`masses`/`metrics`, the delta reply\'s `toVersion`, session tokens on REST).',
    },
    servers: [{ url: '/' }],
    tags: [
      { name: 'HQE' }, { name: 'Spaces' }, { name: 'Sessions' }, { name: 'State' }, { name: 'Telemetry' }, { name: 'Webhooks' }, { name: 'Usage' }, { name: 'Cluster' }, { name: 'Auth' }, { name: 'Ops' },
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
