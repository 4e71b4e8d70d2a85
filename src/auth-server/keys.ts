import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { SIGNING_ALG, type KeySource, type SigningKey } from '../core/jwt.ts';

/** One entry of the key file. `use_from` is when it starts signing; until then it is only published. */
interface StoredKey {
  kid: string;
  private_jwk: JWK;
  created_at: number;
  use_from: number;
}

interface KeyFile {
  keys: StoredKey[];
}

export interface KeyManagerOptions {
  dataDir: string;
  /** The longest lifetime of anything signed: a retired key is published that long after it stops signing. */
  maxTokenTtl: number;
  now?: () => number;
}

/**
 * ES256 signing keys in `<data_dir>/keys.json` (mode 0600). Generated on first start. Rotation adds
 * a key that is published before it signs; a retired key keeps verifying until the last token it
 * signed has expired. A running server notices a rotation made by `mandate keys rotate` because it
 * re-reads the file when its modification time changes.
 */
export class KeyManager implements KeySource {
  readonly file: string;
  private readonly options: KeyManagerOptions;
  private loaded: { mtimeMs: number; keys: (StoredKey & { key: SigningKey })[] } | undefined;
  private checkedAt = 0;

  constructor(options: KeyManagerOptions) {
    this.options = options;
    this.file = join(options.dataDir, 'keys.json');
  }

  private now(): number {
    return this.options.now?.() ?? Math.floor(Date.now() / 1000);
  }

  /** Creates the key file with one key if there is none. */
  async init(): Promise<void> {
    if (!existsSync(this.file)) {
      this.write({ keys: [await newKey(this.now())] });
    }
    await this.reload(true);
  }

  /** Adds a key that starts signing after `publishBeforeUse` seconds; prunes keys nothing can need. */
  async rotate(publishBeforeUse: number): Promise<{ kid: string; useFrom: number }> {
    const now = this.now();
    const file = this.read();
    const key = await newKey(now, now + publishBeforeUse);
    const keys = [...file.keys, key].filter((k, i, all) => {
      const successor = all.slice(i + 1).find((s) => s.use_from > k.use_from);
      return !successor || successor.use_from + this.options.maxTokenTtl > now;
    });
    this.write({ keys });
    await this.reload(true);
    return { kid: key.kid, useFrom: key.use_from };
  }

  async current(): Promise<SigningKey> {
    const keys = await this.all();
    const now = this.now();
    const active = keys.filter((k) => k.use_from <= now).sort((a, b) => b.use_from - a.use_from)[0] ?? keys[0];
    if (!active) throw new Error('no signing key');
    return active.key;
  }

  async byKid(kid: string): Promise<SigningKey | undefined> {
    return (await this.all()).find((k) => k.kid === kid)?.key;
  }

  /** The public keys to publish: every key that signs, will sign, or signed tokens still alive. */
  async jwks(): Promise<{ keys: JWK[] }> {
    const keys = await this.all();
    const now = this.now();
    const published = keys.filter((k) => {
      const successor = keys.find((s) => s.use_from > k.use_from && s.use_from <= now);
      return !successor || successor.use_from + this.options.maxTokenTtl > now;
    });
    return { keys: published.map((k) => k.key.publicJwk) };
  }

  list(): { kid: string; createdAt: number; useFrom: number }[] {
    return this.read().keys.map((k) => ({ kid: k.kid, createdAt: k.created_at, useFrom: k.use_from }));
  }

  private async all() {
    await this.reload(false);
    return this.loaded!.keys;
  }

  private async reload(force: boolean): Promise<void> {
    const nowMs = Date.now();
    if (!force && this.loaded && nowMs - this.checkedAt < 1000) return;
    this.checkedAt = nowMs;
    const mtimeMs = statSync(this.file).mtimeMs;
    if (!force && this.loaded?.mtimeMs === mtimeMs) return;
    const file = this.read();
    const keys = await Promise.all(file.keys.map(async (k) => ({ ...k, key: await toSigningKey(k) })));
    this.loaded = { mtimeMs, keys };
  }

  private read(): KeyFile {
    return JSON.parse(readFileSync(this.file, 'utf8')) as KeyFile;
  }

  private write(file: KeyFile): void {
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(file, null, 2), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.file);
  }
}

async function newKey(now: number, useFrom = now): Promise<StoredKey> {
  const { privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { kid, private_jwk: { ...jwk, kid, alg: SIGNING_ALG }, created_at: now, use_from: useFrom };
}

async function toSigningKey(stored: StoredKey): Promise<SigningKey> {
  const { d: _d, ...publicPart } = stored.private_jwk;
  const publicJwk: JWK = { ...publicPart, kid: stored.kid, alg: SIGNING_ALG, use: 'sig' };
  return {
    kid: stored.kid,
    privateKey: (await importJWK(stored.private_jwk, SIGNING_ALG)) as CryptoKey,
    publicKey: (await importJWK(publicJwk, SIGNING_ALG)) as CryptoKey,
    publicJwk,
  };
}
