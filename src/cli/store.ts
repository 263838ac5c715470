/** The store a CLI command administers: the server's (RESONANCE_DATABASE_URL when set, else the SQLite file under the data directory). */
import { openStore, type Store } from '../store/store.js';

export function openCliStore(dataDir: string): Promise<Store> {
  return openStore({ dataDir, databaseUrl: process.env.RESONANCE_DATABASE_URL || undefined });
}
