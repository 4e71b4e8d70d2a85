import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { exportJWK, importJWK, type JWK } from 'jose';
import { generateDpopKey, type DpopKey } from '../../core/dpop.ts';
import type { DpopKeySource } from '../dpop.ts';
import { sharedWebSecret } from './redis-web-sessions.ts';

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi'];

async function fromJwk(jwk: JWK): Promise<DpopKey> {
  const publicJwk = Object.fromEntries(Object.entries(jwk).filter(([name]) => !PRIVATE_MEMBERS.includes(name) && name !== 'ext' && name !== 'key_ops')) as JWK;
  return { privateKey: (await importJWK(jwk, 'ES256')) as CryptoKey, publicJwk, alg: 'ES256' };
}

/**
 * The gateway's DPoP key for token mediation (`mediation.dpop`, RFC 9449): ES256, made on first
 * use, kept in `<data_dir>/gateway-dpop-key.json` (0600) so upstream tokens cached elsewhere stay
 * usable across restarts, and shared through Redis (like the web routes' keys) so every gateway
 * behind one name proves with the same key. Without either, a key of this process.
 */
export function gatewayDpopKey(options: { dataDir?: string; redis?: Redis; prefix: string; onError?: (error: Error) => void }): DpopKeySource {
  let key: Promise<DpopKey> | undefined;
  const file = options.dataDir ? join(options.dataDir, 'gateway-dpop-key.json') : undefined;
  const load = async (): Promise<DpopKey> => {
    let saved: JWK | undefined;
    if (file) {
      try {
        saved = JSON.parse(readFileSync(file, 'utf8')) as JWK;
      } catch (error) {
        if ((error as { code?: string }).code !== 'ENOENT') options.onError?.(error as Error);
      }
    }
    const make = async () => saved ?? (await exportJWK((await generateDpopKey('ES256')).privateKey));
    let jwk: JWK;
    if (options.redis) {
      try {
        jwk = JSON.parse(await sharedWebSecret(options.redis, options.prefix, 'dpop-key', async () => JSON.stringify(await make()))) as JWK;
      } catch (error) {
        options.onError?.(error as Error);
        jwk = await make();
      }
    } else {
      jwk = await make();
    }
    if (file && JSON.stringify(jwk) !== JSON.stringify(saved)) {
      try {
        mkdirSync(options.dataDir!, { recursive: true, mode: 0o700 });
        const temporary = `${file}.${process.pid}.tmp`;
        writeFileSync(temporary, `${JSON.stringify(jwk)}\n`, { mode: 0o600 });
        chmodSync(temporary, 0o600);
        renameSync(temporary, file);
      } catch (error) {
        options.onError?.(error as Error);
      }
    }
    return fromJwk(jwk);
  };
  return () => (key ??= load().catch((error: unknown) => {
    key = undefined;
    throw error;
  }));
}
