/** openapi.yaml is generated from the zod schemas; the committed file must be the current one. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { openApiYaml } from '../src/http/openapi.js';

describe('openapi.yaml', () => {
  it('is up to date with the schemas (regenerate with `npm run openapi`)', () => {
    const committed = readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8');
    expect(committed === openApiYaml(), 'openapi.yaml is stale: run `npm run openapi` and commit it').toBe(true);
  });

  it('documents every operation of the HQE contract', () => {
    const yaml = openApiYaml();
    for (const path of ['/v1/hqe/validate:', '/v1/hqe/run:', '/v1/hqe/sessions:', '/v1/hqe/sessions/{id}:', '/v1/hqe/sessions/{id}/step:',
      '/v1/hqe/sessions/{id}/snapshots:', '/v1/hqe/sessions/{id}/stream:', '/v1/hqe/webhooks:', '/oauth/token:']) {
      expect(yaml).toContain(`\n  ${path}\n`);
    }
  });

  it('documents every operation of the Spaces contract', () => {
    const yaml = openApiYaml();
    for (const path of ['/v1/spaces:', '/v1/spaces/{id}:', '/v1/spaces/{id}/basis:', '/v1/spaces/{id}/snapshot:', '/v1/spaces/{id}/deltas:',
      '/v1/spaces/{id}/sessions:', '/v1/spaces/{id}/telemetry:', '/v1/spaces/{id}/members:', '/v1/webhooks:']) {
      expect(yaml).toContain(`\n  ${path}\n`);
    }
    for (const schema of ['Space:', 'SpaceSnapshot:', 'SessionToken:', 'Member:', 'SpacePage:', 'SpaceWebhookEvent:']) expect(yaml).toContain(`\n    ${schema}\n`);
  });
});
