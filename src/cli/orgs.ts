/**
 * `resonance orgs`: an org's quotas (docs/tenancy.md), in the server's store (cli/store.ts). A running
 * server reads overrides again within seconds, so no restart is needed.
 */
import { isQuotaName, QUOTA_NAMES, QUOTAS } from '../model/tenancy.js';
import { exitCodeFor, nearest, parseCommand, unknownAction, UsageError } from './args.js';
import { openCliStore } from './store.js';

export const ORGS_USAGE = `usage:
  resonance orgs quotas ORG [--data DIR] [--json]          the org's quotas (default or override)
  resonance orgs set-quota ORG NAME VALUE [--data DIR]     override a quota for the org
  resonance orgs set-quota ORG NAME default [--data DIR]   back to the server's default

quotas: ${QUOTA_NAMES.join(', ')}`;

const out = (text: string): void => void process.stdout.write(text + '\n');

export async function orgsCommand(args: string[]): Promise<number> {
  try {
    const { values, positionals } = parseCommand({ name: 'orgs', usage: ORGS_USAGE, positionals: 4 }, args, {
      data: { type: 'string' },
      json: { type: 'boolean' },
    });
    const [action, orgName, name, value] = positionals;
    if (action !== 'quotas' && action !== 'set-quota') throw unknownAction('orgs', action, ['quotas', 'set-quota'], ORGS_USAGE);
    if (!orgName?.trim()) throw new UsageError(`orgs ${action} needs the org name`);
    const store = await openCliStore(values.data ?? (process.env.RESONANCE_DATA || './data'));
    try {
      const org = await store.auth.findOrg(orgName);
      if (!org) {
        process.stderr.write(`resonance: no org named "${orgName}"\n`);
        return 1;
      }
      const usage = store.usage;
      if (action === 'set-quota') {
        if (!name || !isQuotaName(name)) {
          const near = name ? nearest(name, QUOTA_NAMES) : undefined;
          throw new UsageError(`unknown quota "${name ?? ''}"${near ? ` (did you mean "${near}"?)` : ''}; known: ${QUOTA_NAMES.join(', ')}`, 'orgs');
        }
        if (value === undefined) throw new UsageError('set-quota needs a VALUE (a non-negative number, or "default")');
        const n = value === 'default' ? null : Number(value);
        if (n !== null && (!Number.isFinite(n) || n < 0 || value.trim() === '')) throw new UsageError(`VALUE must be a non-negative number or "default" (got "${value}")`);
        await usage.setQuota(org.id, name, n);
        out(n === null ? `${org.name}: ${name} back to the default` : `${org.name}: ${name} = ${n}`);
        return 0;
      }
      const overrides = await usage.quotaOverrides(org.id);
      const rows = QUOTA_NAMES.map((q) => ({ name: q, kind: QUOTAS[q].kind, value: overrides[q] ?? null, default: QUOTAS[q].default }));
      if (values.json) out(JSON.stringify({ org: org.name, quotas: rows }));
      else {
        for (const r of rows) {
          out(`${r.name.padEnd(24)} ${r.kind.padEnd(5)} ${r.value === null ? `default (${r.default}; RESONANCE_QUOTA_${r.name.toUpperCase()} may change it)` : String(r.value)}`);
        }
      }
      return 0;
    } finally {
      await store.close();
    }
  } catch (err) {
    return exitCodeFor(err);
  }
}
