import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { JWK } from 'jose';

/**
 * The private key of the gateway's identity assertions (web routes), in
 * `<data_dir>/identity-key.json`, mode 0600: apps keep trusting the gateway across restarts.
 */
export function identityKeyFile(dataDir: string) {
  const file = join(dataDir, 'identity-key.json');
  return {
    file,
    load(onError?: (error: Error) => void): JWK | undefined {
      try {
        return JSON.parse(readFileSync(file, 'utf8')) as JWK;
      } catch (error) {
        if ((error as { code?: string }).code !== 'ENOENT') onError?.(error as Error);
        return undefined;
      }
    },
    save(jwk: JWK): void {
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const temporary = `${file}.${process.pid}.tmp`;
      writeFileSync(temporary, `${JSON.stringify(jwk)}\n`, { mode: 0o600 });
      chmodSync(temporary, 0o600);
      renameSync(temporary, file);
    },
  };
}

/**
 * The key web session cookies are sealed with when a route names no `session.secret_env`: kept in
 * `<data_dir>/web-session.key` (0600, made on first start), so sessions survive a restart; without
 * a data dir, random for this process (a restart signs everyone out).
 */
export function webSessionKey(dataDir: string | undefined, onError?: (error: Error) => void): Uint8Array {
  if (!dataDir) return new Uint8Array(randomBytes(32));
  const file = join(dataDir, 'web-session.key');
  try {
    const saved = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64url');
    if (saved.length >= 32) return new Uint8Array(saved);
  } catch (error) {
    if ((error as { code?: string }).code !== 'ENOENT') onError?.(error as Error);
  }
  const key = randomBytes(32);
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(file, `${key.toString('base64url')}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
  } catch (error) {
    onError?.(error as Error);
  }
  return new Uint8Array(key);
}
