/**
 * The AuthStore contract (src/store/auth.ts) on the run's store (test/helpers/stores.ts): orgs, API keys
 * and OAuth clients; creation, listing, revocation, verification, and the bootstrap key registered by
 * several starts at once.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ALL_SCOPES, type AuthStore } from '../../src/store/auth.js';
import type { Store } from '../../src/store/store.js';
import { openTestStore, type TestStore } from '../helpers/stores.js';

// One store for the file: every test uses orgs of its own, so they never meet.
let ts: TestStore;
let auth: AuthStore;
const extra: Store[] = [];

beforeAll(async () => {
  ts = await openTestStore();
  auth = ts.store.auth;
});

afterEach(async () => {
  while (extra.length > 0) await extra.pop()!.close();
});

afterAll(async () => {
  await ts.destroy();
});

let orgs = 0;
const newOrg = (): string => `org-${++orgs}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('orgs', () => {
  it('ensureOrg creates an org once, by trimmed name; findOrg finds it and nothing else', async () => {
    const name = newOrg();
    expect(await auth.findOrg(name)).toBeNull();
    const org = await auth.ensureOrg(` ${name}  `);
    expect(org).toMatchObject({ name });
    expect(org.id).toMatch(/^org_/);
    expect(await auth.ensureOrg(name)).toEqual(org);
    expect(await auth.findOrg(` ${name}`)).toEqual(org);
    expect(await auth.findOrg(`${name}-other`)).toBeNull();
    await expect(auth.ensureOrg('   ')).rejects.toThrow(/empty/);
  });

  it('ensureOrg called at once from two handles on the same data makes one org', async () => {
    const org = newOrg();
    const other = await ts.openSecondHandle();
    extra.push(other);
    const made = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => (i % 2 ? other.auth : auth).ensureOrg(org)));
    expect(new Set(made.map((o) => o.id)).size).toBe(1);
  });
});

describe('API keys', () => {
  it('creates a key shown once, verifiable, listed by prefix only, with its scopes deduplicated', async () => {
    const org = newOrg();
    const { record, key } = await auth.createApiKey(org, ['hqe.read', 'spaces.write', 'hqe.read']);
    expect(key).toMatch(/^rsk_[A-Za-z0-9_-]{43}$/);
    expect(record).toMatchObject({ orgName: org, prefix: key.slice(0, 12), scopes: ['hqe.read', 'spaces.write'], revokedAt: null });
    expect(record.id).toMatch(/^key_/);
    expect(record.orgId).toBe((await auth.findOrg(org))!.id);
    expect(await auth.verifyApiKey(key)).toEqual(record);
    expect(await auth.verifyApiKey(`${key}x`)).toBeNull();
    expect(await auth.verifyApiKey('')).toBeNull();
    const listed = await auth.listApiKeys(org);
    expect(listed).toEqual([record]);
    expect(JSON.stringify(listed)).not.toContain(key);
  });

  it('lists one org’s keys, oldest first', async () => {
    const org = newOrg();
    const a = await auth.createApiKey(org, ['hqe.read']);
    await sleep(2);
    const b = await auth.createApiKey(org, ALL_SCOPES);
    await auth.createApiKey(`${org}-other`, ['hqe.read']);
    expect((await auth.listApiKeys(org)).map((k) => k.id)).toEqual([a.record.id, b.record.id]);
    expect(await auth.listApiKeys('nobody')).toEqual([]);
  });

  it('revocation refuses the key, keeps the first revocation time, and is false for unknown ids', async () => {
    const org = newOrg();
    const { record, key } = await auth.createApiKey(org, ['hqe.read']);
    const ref = { kind: 'api_key', id: record.id } as const;
    expect(await auth.isActive(ref)).toBe(true);
    const before = Date.now();
    expect(await auth.revokeApiKey(record.id)).toBe(true);
    expect(await auth.verifyApiKey(key)).toBeNull();
    expect(await auth.isActive(ref)).toBe(false);
    const first = (await auth.listApiKeys(org))[0]!.revokedAt;
    expect(first).toBeGreaterThanOrEqual(before);
    await sleep(5);
    expect(await auth.revokeApiKey(record.id)).toBe(true);
    expect((await auth.listApiKeys(org))[0]!.revokedAt).toBe(first);
    expect(await auth.revokeApiKey('key_missing')).toBe(false);
    expect(await auth.isActive({ kind: 'api_key', id: 'key_missing' })).toBe(false);
  });

  it('ensureApiKey registers a chosen key once; a second call keeps the first record, revoked stays revoked', async () => {
    const org = newOrg();
    const key = `rsk_bootstrap-key-for-tests-${org}`;
    const first = await auth.ensureApiKey(org, key, ALL_SCOPES);
    expect(first).toMatchObject({ orgName: org, prefix: key.slice(0, 12), scopes: ALL_SCOPES, revokedAt: null });
    expect(await auth.verifyApiKey(key)).toEqual(first);
    // Other scopes or another org on a later start change nothing: the stored key stands.
    expect(await auth.ensureApiKey(org, key, ['hqe.read'])).toEqual(first);
    expect(await auth.ensureApiKey(`${org}-elsewhere`, key, ['hqe.read'])).toEqual(first);
    expect(await auth.findOrg(`${org}-elsewhere`)).toBeNull();
    await auth.revokeApiKey(first.id);
    const again = await auth.ensureApiKey(org, key, ALL_SCOPES);
    expect(again.id).toBe(first.id);
    expect(again.revokedAt).not.toBeNull();
    expect(await auth.verifyApiKey(key)).toBeNull();
    expect(await auth.listApiKeys(org)).toHaveLength(1);
  });

  it('ensureApiKey from several starts at once (two handles on the same data) makes one key and one org', async () => {
    const org = newOrg();
    const other = await ts.openSecondHandle();
    extra.push(other);
    const key = `rsk_raced-bootstrap-key-${org}`;
    const records = await Promise.all([0, 1, 2, 3, 4].map((i) => (i % 2 ? other.auth : auth).ensureApiKey(org, key, ALL_SCOPES)));
    expect(new Set(records.map((r) => r.id)).size).toBe(1);
    expect(records.every((r) => r.orgName === org)).toBe(true);
    expect(await auth.listApiKeys(org)).toHaveLength(1);
    expect((await auth.verifyApiKey(key))?.id).toBe(records[0]!.id);
  });

  it('keys survive a reopen of the store', async () => {
    const org = newOrg();
    const { record, key } = await auth.createApiKey(org, ['hqe.write']);
    auth = (await ts.reopen()).auth;
    expect(await auth.verifyApiKey(key)).toEqual(record);
  });
});

describe('OAuth clients', () => {
  it('creates a client whose secret verifies; wrong secret, unknown id and revoked client do not', async () => {
    const org = newOrg();
    const { record, secret } = await auth.createClient(org, ['spaces.read', 'spaces.read', 'hqe.write']);
    expect(secret).toMatch(/^rcs_[A-Za-z0-9_-]{43}$/);
    expect(record.id).toMatch(/^rc_/);
    expect(record).toMatchObject({ orgName: org, scopes: ['spaces.read', 'hqe.write'], revokedAt: null });
    expect(await auth.verifyClient(record.id, secret)).toEqual(record);
    expect(await auth.verifyClient(record.id, `${secret}x`)).toBeNull();
    expect(await auth.verifyClient('rc_missing', secret)).toBeNull();
    const ref = { kind: 'oauth_client', id: record.id } as const;
    expect(await auth.isActive(ref)).toBe(true);
    // A key id is not a client id: isActive looks in the kind's own table.
    expect(await auth.isActive({ kind: 'api_key', id: record.id })).toBe(false);

    expect(await auth.revokeClient(record.id)).toBe(true);
    expect(await auth.verifyClient(record.id, secret)).toBeNull();
    expect(await auth.isActive(ref)).toBe(false);
    const first = (await auth.listClients(org))[0]!.revokedAt;
    expect(first).not.toBeNull();
    await sleep(5);
    expect(await auth.revokeClient(record.id)).toBe(true);
    expect((await auth.listClients(org))[0]!.revokedAt).toBe(first);
    expect(await auth.revokeClient('rc_missing')).toBe(false);
  });

  it('lists one org’s clients, oldest first, without secrets', async () => {
    const org = newOrg();
    const a = await auth.createClient(org, ['hqe.read']);
    await sleep(2);
    const b = await auth.createClient(org, ['hqe.write']);
    await auth.createClient(`${org}-other`, ['hqe.read']);
    const listed = await auth.listClients(org);
    expect(listed.map((c) => c.id)).toEqual([a.record.id, b.record.id]);
    expect(JSON.stringify(listed)).not.toContain(a.secret);
    expect(await auth.listClients('nobody')).toEqual([]);
  });
});
