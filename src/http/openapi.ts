/** openapi.yaml, generated from the zod schemas of every router (npm run openapi writes the committed file). */
import { createDocument, type ZodOpenApiPathsObject } from 'zod-openapi';
import { stringify } from 'yaml';
import { hqePaths } from './routes/hqe.js';
import { oauthPaths } from './routes/oauth.js';
import { opsPaths } from './routes/ops.js';
import { webhookEventPaths, webhookPaths } from './routes/webhooks.js';

export function openApiDocument(): ReturnType<typeof createDocument> {
  const paths: ZodOpenApiPathsObject = { ...hqePaths, ...webhookPaths, ...oauthPaths, ...opsPaths };
  return createDocument({
    openapi: '3.1.0',
    info: {
      title: 'Resonance API',
      version: '1.0.0',
      description:
        'Prime-basis resonance simulations (HQE). Errors are RFC 9457 problem+json with a stable `code`. ' +
        'Additions to the seed contract: `completed` status, `frequencyScale`, mixer `localityBias`/`learningRate`/`gammaMax`, ' +
        '`resonanceTarget.weights`, run `events`/`metrics`/`seed`/`status`, webhook list/get/delete, OAuth2 token endpoint, ops endpoints.',
    },
    servers: [{ url: '/' }],
    tags: [{ name: 'HQE' }, { name: 'Telemetry' }, { name: 'Webhooks' }, { name: 'Auth' }, { name: 'Ops' }],
    security: [{ ApiKeyAuth: [] }, { OAuth2CC: ['hqe.read', 'hqe.write'] }],
    components: {
      securitySchemes: {
        ApiKeyAuth: { type: 'apiKey', in: 'header', name: 'X-Api-Key' },
        OAuth2CC: {
          type: 'oauth2',
          flows: { clientCredentials: { tokenUrl: '/oauth/token', scopes: { 'hqe.read': 'Read HQE state and telemetry', 'hqe.write': 'Run HQE simulations' } } },
        },
      },
    },
    paths,
    webhooks: webhookEventPaths,
  });
}

export function openApiYaml(): string {
  return stringify(openApiDocument(), { aliasDuplicateObjects: false, lineWidth: 0 });
}
