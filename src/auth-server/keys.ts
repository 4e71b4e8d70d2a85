import { createPrivateKey, createPublicKey, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
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
    const all = [...file.keys, key];
    const keys = all.filter((_, i) => stillNeeded(all, i, now, this.options.maxTokenTtl));
    this.write({ keys });
    await this.reload(true);
    return { kid: key.kid, useFrom: key.use_from };
  }

  async current(): Promise<SigningKey> {
    const keys = await this.all();
    const now = this.now();
    // Keys are kept in rotation order: the newest one whose time has come signs.
    const active = keys.findLast((k) => k.use_from <= now) ?? keys[0];
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
    return { keys: keys.filter((_, i) => stillNeeded(keys, i, now, this.options.maxTokenTtl)).map((k) => k.key.publicJwk) };
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

/**
 * A key is needed while it signs, before it signs, and until `maxTokenTtl` after a later key took
 * over (the last token it signed expires then). Keys are in rotation order.
 */
function stillNeeded(keys: readonly { use_from: number }[], index: number, now: number, maxTokenTtl: number): boolean {
  const takeovers = keys.slice(index + 1).map((k) => k.use_from).filter((t) => t <= now);
  if (takeovers.length === 0) return true;
  return Math.min(...takeovers) + maxTokenTtl > now;
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
  // node:crypto signs ES256 several times cheaper than WebCrypto, and the callback form runs on
  // libuv's thread pool, off the event loop (docs/benchmarks.md).
  const nodeKey = createPrivateKey({ key: stored.private_jwk as never, format: 'jwk' });
  const sign = (input: Uint8Array) =>
    new Promise<Uint8Array>((resolve, reject) =>
      cryptoSign('sha256', input, { key: nodeKey, dsaEncoding: 'ieee-p1363' }, (error, signature) => (error ? reject(error) : resolve(signature))),
    );
  const nodePublicKey = createPublicKey(nodeKey);
  const verify = (input: Uint8Array, signature: Uint8Array) =>
    new Promise<boolean>((resolve, reject) =>
      cryptoVerify('sha256', input, { key: nodePublicKey, dsaEncoding: 'ieee-p1363' }, signature, (error, ok) => (error ? reject(error) : resolve(ok))),
    );
  return {
    kid: stored.kid,
    sign,
    verify,
    privateKey: (await importJWK(stored.private_jwk, SIGNING_ALG)) as CryptoKey,
    publicKey: (await importJWK(publicJwk, SIGNING_ALG)) as CryptoKey,
    publicJwk,
  };
}
