import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JWK } from 'jose';

/**
 * The last good signing keys of the authorization servers, in `<data_dir>/signing-keys.json`, so a
 * gateway restarted while an AS is down still validates tokens. Public keys only (private members
 * are dropped here as well as when fetched), so the file holds no secret.
 */
export function signingKeyFile(dataDir: string) {
  const file = join(dataDir, 'signing-keys.json');
  return {
    file,
    /** The keys saved before, by source; none when the file is missing or unreadable. */
    load(onError?: (error: Error) => void): Record<string, JWK[]> {
      try {
        const parsed = JSON.parse(readFileSync(file, 'utf8')) as { keys?: unknown };
        const keys: Record<string, JWK[]> = {};
        for (const [source, list] of Object.entries((parsed.keys ?? {}) as Record<string, unknown>)) {
          if (Array.isArray(list)) keys[source] = list.filter((jwk): jwk is JWK => typeof jwk === 'object' && jwk !== null && !('d' in jwk));
        }
        return keys;
      } catch (error) {
        if ((error as { code?: string }).code !== 'ENOENT') onError?.(error as Error);
        return {};
      }
    },
    /** Written to a temporary file and renamed over the old one: a crash leaves one or the other, whole. */
    save(keys: Record<string, JWK[]>): void {
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const publicOnly = Object.fromEntries(Object.entries(keys).map(([source, list]) => [source, list.filter((jwk) => !('d' in jwk))]));
      const temporary = `${file}.${process.pid}.tmp`;
      writeFileSync(temporary, `${JSON.stringify({ saved_at: new Date().toISOString(), keys: publicOnly }, null, 2)}\n`);
      renameSync(temporary, file);
    },
  };
}
