import { importJWK, type JWK } from 'jose';
import { OAuthError } from '../core/errors.ts';
import type { VerificationKey, VerificationKeySource } from '../core/jwt.ts';
import type { KeySetCache } from './verification-cache.ts';

/**
 * The authorization server's public keys, fetched from its JWKS and kept: tokens are verified
 * locally, with no call per request (DESIGN §6). The set is refreshed on a timer and when a token
 * names an unknown `kid` (a rotation), at most every `minRefreshMs` so that made-up kids cannot
 * make the gateway hammer the AS. While the AS is unreachable the cached set keeps serving; a
 * token whose key is not in it then gets 503 `temporarily_unavailable`, never 401: the gateway
 * cannot tell, and 401 would tell the client to throw a good token away.
 */
export interface JwksOptions {
  /** The JWKS URL, or a function that finds it (AS metadata discovery) on first use. */
  jwksUri: string | (() => Promise<string>);
  refreshMs: number;
  minRefreshMs?: number;
  fetch?: typeof fetch;
  /** A faster verifier for this runtime (node:crypto on Node); jose's WebCrypto otherwise. */
  createVerifier?: (jwk: JWK, alg: string) => VerificationKey['verify'];
  onError?: (error: Error) => void;
  /** Keys known from before (a previous route build, a file): served until a fetch replaces them. */
  initial?: JWK[];
  /** Told the public JWKs accepted after each successful fetch (to keep them for the next build). */
  onKeys?: (keys: JWK[]) => void;
  /**
   * How the set stays fresh once started: `timer` (a server: an interval, begun at the first use),
   * or `on-use` (Workers, where a timer cannot outlive a request: a use that finds the set older
   * than `refreshMs` fetches it again in the background). Nothing runs before the first use — no
   * I/O or timer at a Worker's global scope.
   */
  schedule?: 'timer' | 'on-use';
  /**
   * Where the set is kept for other instances (Workers: the Cache API), under `source`: the first
   * use reads it there before fetching, and each successful fetch (including one forced by an
   * unknown `kid`) writes it there, to expire after `refreshMs`. A failing cache is a miss.
   */
  shared?: { cache: KeySetCache; source: string };
}

/** JWS algorithm a JWK is for, when the JWK does not say (RFC 7518 §3.1). */
function defaultAlg(jwk: JWK): string | undefined {
  if (jwk.kty === 'EC') return ({ 'P-256': 'ES256', 'P-384': 'ES384' } as Record<string, string>)[jwk.crv ?? ''];
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  return undefined;
}

const UNREACHABLE_RETRY_MS = 1_000;
/** A fetch of the set is aborted after this long (AbortSignal.timeout). */
const FETCH_TIMEOUT_MS = 5_000;
/**
 * A fetch or first load still pending after this long is abandoned and another one started, never
 * joined: in workerd, work a request left running when it answered is cancelled and its promises
 * never settle, so joining one would stop the set's refreshes for the isolate's whole life.
 */
const STALE_FETCH_MS = FETCH_TIMEOUT_MS + 1_000;

/** What a request lends the key set: Workers' `ctx.waitUntil`, so that a fetch it starts runs to its end. */
export interface KeyUseContext {
  waitUntil?(promise: Promise<unknown>): void;
}

export class RemoteJwks implements VerificationKeySource {
  private keys = new Map<string, VerificationKey>();
  /** The first load (known keys, the shared cache, or a fetch), and when it began. */
  private loading: { promise: Promise<void>; startedAt: number; settled: boolean } | undefined;
  /** The fetch under way, and when it began (one at a time; a stale one is abandoned, see STALE_FETCH_MS). */
  private fetching: { promise: Promise<void>; startedAt: number } | undefined;
  /** Bumped by each fetch: an abandoned fetch that settles after all installs nothing. */
  private generation = 0;
  private lastFetch = 0;
  /** Why the last fetch failed; undefined after a success. */
  private failure: string | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private started = false;

  constructor(private options: JwksOptions) {}

  /** Where to fetch from next time (a reload re-discovers the JWKS URL: the AS may have moved it). */
  retarget(jwksUri: JwksOptions['jwksUri']): void {
    this.options = { ...this.options, jwksUri };
  }

  /** Whether this key set already holds `kid`, so a token signed with it verifies without a fetch. */
  holds(kid: string): boolean {
    return this.keys.has(kid);
  }

  /**
   * The key `kid`, from the set (loaded at the first use). `context.waitUntil` (Workers) is given
   * every fetch this use starts, so that a background refresh is not cancelled with the request.
   */
  async byKid(kid: string, context?: KeyUseContext): Promise<VerificationKey | undefined> {
    // Known keys serve at once; without any, the first use waits for the first fetch. A first load
    // that never settled (its request was cancelled) is begun again rather than awaited forever.
    if (!this.loading || (!this.loading.settled && Date.now() - this.loading.startedAt >= STALE_FETCH_MS)) {
      const initial = this.options.initial?.length ? this.options.initial : undefined;
      const loading = { promise: Promise.resolve(), startedAt: Date.now(), settled: false };
      // Handed to waitUntil as a whole below (the fetch it may make included).
      loading.promise = (initial ? this.install(initial).then(() => undefined) : this.options.shared ? this.loadShared(this.options.shared) : this.refresh()).finally(() => {
        loading.settled = true;
      });
      this.loading = loading;
      context?.waitUntil?.(loading.promise);
      // Fresher keys than the known ones are fetched at once rather than after refreshMs.
      if (initial && this.started) void loading.promise.then(() => this.refresh(context));
    }
    this.keepFresh(context);
    await this.loading.promise;
    const key = this.keys.get(kid);
    if (key) return key;
    // An unknown kid may be a key the AS has just started publishing. While the AS is unreachable
    // it is asked again at most every second, so the gateway recovers soon after the AS does.
    const minRefreshMs = this.options.minRefreshMs ?? 10_000;
    if (Date.now() - this.lastFetch >= (this.failure === undefined ? minRefreshMs : Math.min(minRefreshMs, UNREACHABLE_RETRY_MS))) {
      await this.refresh(context);
      const fetched = this.keys.get(kid);
      if (fetched) return fetched;
    }
    if (this.failure !== undefined) {
      throw new OAuthError('temporarily_unavailable', 'the authorization server cannot be reached', {
        status: 503,
        reason: `signing key ${kid} is not among the cached keys, and the JWKS cannot be fetched: ${this.failure}`,
      });
    }
    return undefined;
  }

  /**
   * Fetches the set (one fetch at a time: a fetch under way is joined, unless it began more than
   * STALE_FETCH_MS ago — then it is abandoned and a new one begins); on failure the previous set
   * stays (and the error is reported). `context.waitUntil` is told of the fetch.
   */
  refresh(context?: KeyUseContext): Promise<void> {
    const now = Date.now();
    if (!this.fetching || now - this.fetching.startedAt >= STALE_FETCH_MS) {
      const generation = ++this.generation;
      const fetching = { promise: Promise.resolve(), startedAt: now };
      fetching.promise = this.fetchKeys(generation).finally(() => {
        if (this.fetching === fetching) this.fetching = undefined;
      });
      this.fetching = fetching;
    }
    context?.waitUntil?.(this.fetching.promise);
    return this.fetching.promise;
  }

  /** The first load with a shared cache: its set if it has a fresh one, else a fetch. */
  private async loadShared(shared: NonNullable<JwksOptions['shared']>, context?: KeyUseContext): Promise<void> {
    // Counts as a load under way: the on-use schedule must not start a second one meanwhile.
    this.lastFetch = Date.now();
    const stored = await shared.cache.get(shared.source).catch(() => undefined);
    const age = stored ? Date.now() - stored.fetchedAt : Infinity;
    if (stored && Array.isArray(stored.keys) && age >= 0 && age < this.options.refreshMs && (await this.install(stored.keys)).length > 0) {
      // As old as the fetch that got it: the on-use schedule refreshes it when that one would have.
      this.lastFetch = stored.fetchedAt;
      return;
    }
    return this.refresh(context);
  }

  private async fetchKeys(generation: number): Promise<void> {
    this.lastFetch = Date.now();
    try {
      const uri = typeof this.options.jwksUri === 'string' ? this.options.jwksUri : await this.options.jwksUri();
      const response = await (this.options.fetch ?? fetch)(uri, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
      if (!response.ok) throw new Error(`JWKS ${uri} answered ${response.status}`);
      const body = (await response.json()) as { keys?: JWK[] };
      if (!Array.isArray(body.keys)) throw new Error(`JWKS ${uri} has no keys array`);
      // Abandoned meanwhile (it took longer than STALE_FETCH_MS): a newer fetch decides.
      if (generation !== this.generation) return;
      const accepted = await this.install(body.keys);
      this.failure = undefined;
      this.options.onKeys?.(accepted);
      const shared = this.options.shared;
      if (shared && accepted.length > 0) {
        await shared.cache.put(shared.source, { keys: accepted, fetchedAt: this.lastFetch }, Math.max(1, Math.ceil(this.options.refreshMs / 1000))).catch(() => undefined);
      }
    } catch (error) {
      if (generation !== this.generation) return;
      this.failure = (error as Error).message;
      this.options.onError?.(error as Error);
    }
  }

  /** Replaces the set with the usable public signing keys of `jwks`; returns those, as JWKs. */
  private async install(jwks: JWK[]): Promise<JWK[]> {
    const next = new Map<string, VerificationKey>();
    const accepted: JWK[] = [];
    for (const jwk of jwks) {
      const alg = jwk.alg ?? defaultAlg(jwk);
      // Only public signing keys with an id: a symmetric or private key in a JWKS is a misconfiguration.
      if (!jwk.kid || !alg || (jwk.use && jwk.use !== 'sig') || jwk.kty === 'oct' || 'd' in jwk) continue;
      try {
        const publicKey = (await importJWK(jwk, alg)) as CryptoKey;
        next.set(jwk.kid, { kid: jwk.kid, alg, publicKey, verify: this.options.createVerifier?.(jwk, alg) });
        accepted.push(jwk);
      } catch {
        // A key this runtime cannot use is skipped, not fatal for the others.
      }
    }
    this.keys = next;
    return accepted;
  }

  /** Lets the set refresh itself (per `schedule`) from its first use on; starts nothing now. */
  start(): void {
    this.started = true;
  }

  stop(): void {
    this.started = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * At each use: the refresh timer begins (`timer`), or a stale set is fetched again in the
   * background (`on-use`), under the request's `waitUntil` so that the request's end does not
   * cancel it. (The fetch's start counts as `lastFetch`: a fetch that hangs is retried by a use
   * after STALE_FETCH_MS, see `refresh`.)
   */
  private keepFresh(context?: KeyUseContext): void {
    if (!this.started) return;
    if ((this.options.schedule ?? 'timer') === 'on-use') {
      if (Date.now() - this.lastFetch >= this.options.refreshMs) void this.refresh(context);
      return;
    }
    if (this.timer) return;
    this.timer = setInterval(() => void this.refresh(), this.options.refreshMs);
    (this.timer as { unref?: () => void }).unref?.();
  }
}
