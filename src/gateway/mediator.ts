import { OAuthError } from '../core/errors.ts';
import { basicAuthorization } from '../core/encoding.ts';
import { TOKEN_EXCHANGE_GRANT, TOKEN_TYPES } from '../core/delegation.ts';
import { metadataUrl } from './token-validator.ts';
import { createDpopProof } from '../core/dpop.ts';
import type { DpopKeySource } from './dpop.ts';

export interface MediatorOptions {
  tokenEndpoint?: string;
  metadata: () => Promise<Record<string, unknown>>;
  clientId: string;
  clientSecret: string;
  /** The upstream's resource identifier: the audience of the exchanged token. */
  resource: string;
  scope?: string;
  fetch?: typeof fetch;
  /** Most exchanged tokens remembered. */
  maxEntries?: number;
  /**
   * `mediation.dpop`: the gateway's DPoP key. The exchange carries a proof (RFC 9449 §5), the
   * token must come back bound (`token_type: DPoP`), and the upstream gets it with a proof.
   */
  dpop?: DpopKeySource;
}

/** Largest number of upstream origins whose DPoP nonce is remembered. */
const MAX_NONCES = 1_000;

/**
 * Token mediation: the caller's token is meant for the gateway and never travels further (no
 * token passthrough). When the upstream needs a token of its own, the gateway exchanges the
 * caller's token at the AS (RFC 8693, the gateway authenticating as the actor) for one whose
 * audience is the upstream, and reuses it until shortly before it expires.
 */
export class Mediator {
  private readonly cache = new Map<string, { token: string; refreshAt: number }>();
  private readonly inflight = new Map<string, Promise<string>>();
  private readonly basic: string;
  /** The last DPoP nonce the authorization server gave (RFC 9449 §8), and the upstreams' (§9), by origin. */
  private asNonce: string | undefined;
  private readonly upstreamNonces = new Map<string, string>();

  constructor(private readonly options: MediatorOptions) {
    this.basic = basicAuthorization(options.clientId, options.clientSecret);
  }

  /** Whether upstream tokens are DPoP-bound to the gateway's key (sent as `DPoP` with a proof). */
  get bound(): boolean {
    return this.options.dpop !== undefined;
  }

  /**
   * A proof for one upstream request (RFC 9449 §7.1): `htu` the upstream URL (after rewrite, no
   * query), `ath` of the upstream token, `content_digest` of the body sent (SEP-1932), and the
   * upstream's last nonce (or `nonce`, the one a 401 `use_dpop_nonce` just gave).
   */
  async upstreamProof(p: { token: string; method: string; url: string; body?: string; nonce?: string }): Promise<string> {
    const key = await this.options.dpop!();
    const nonce = p.nonce ?? this.upstreamNonces.get(new URL(p.url).origin);
    return createDpopProof(key, { htm: p.method, htu: p.url, accessToken: p.token, nonce, body: p.body === undefined ? undefined : new TextEncoder().encode(p.body) });
  }

  /** Remembers an upstream's `DPoP-Nonce` for the next proofs to it. */
  noteUpstreamNonce(url: string, nonce: string): void {
    const origin = new URL(url).origin;
    if (!this.upstreamNonces.has(origin) && this.upstreamNonces.size >= MAX_NONCES) this.upstreamNonces.delete(this.upstreamNonces.keys().next().value as string);
    this.upstreamNonces.set(origin, nonce);
  }

  /** The token to send upstream for this caller token; throws OAuthError when the AS refuses. */
  async upstreamToken(subjectToken: string, scope: string | undefined): Promise<string> {
    const wanted = this.options.scope ?? scope;
    // One cached token per subject token and scope: a narrower call gets a narrower token.
    const key = `${wanted ?? ''}\n${subjectToken}`;
    const cached = this.cache.get(key);
    if (cached && cached.refreshAt > Date.now()) return cached.token;
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.exchange(key, subjectToken, wanted).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  private async exchange(key: string, subjectToken: string, scope: string | undefined): Promise<string> {
    const form = new URLSearchParams({
      grant_type: TOKEN_EXCHANGE_GRANT,
      subject_token: subjectToken,
      subject_token_type: TOKEN_TYPES.accessToken,
      requested_token_type: TOKEN_TYPES.accessToken,
      resource: this.options.resource,
    });
    if (scope) form.set('scope', scope);
    let response: Response;
    let body: { access_token?: string; token_type?: string; expires_in?: number; error?: string; error_description?: string };
    try {
      const endpoint = this.options.tokenEndpoint ?? (await metadataUrl(this.options.metadata, 'token_endpoint'));
      const key = this.options.dpop ? await this.options.dpop() : undefined;
      const send = async (nonce: string | undefined) => {
        const headers: Record<string, string> = { authorization: this.basic, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
        if (key) headers.dpop = await createDpopProof(key, { htm: 'POST', htu: endpoint, nonce });
        const answer = await (this.options.fetch ?? fetch)(endpoint, { method: 'POST', headers, body: form.toString(), signal: AbortSignal.timeout(5_000) });
        const nonceGiven = answer.headers.get('dpop-nonce');
        if (key && nonceGiven) this.asNonce = nonceGiven;
        return { answer, json: (await answer.json().catch(() => ({}))) as typeof body, nonceGiven };
      };
      let sent = await send(this.asNonce);
      // RFC 9449 §8: the AS wants a (fresh) nonce: once more with the one it gave.
      if (key && sent.answer.status === 400 && sent.json.error === 'use_dpop_nonce' && sent.nonceGiven) sent = await send(sent.nonceGiven);
      response = sent.answer;
      body = sent.json;
    } catch (error) {
      throw new OAuthError('temporarily_unavailable', 'the authorization server cannot be reached', { status: 503, reason: `token exchange: ${(error as Error).message}` });
    }
    if (this.options.dpop && response.ok && typeof body.access_token === 'string' && body.token_type?.toLowerCase() !== 'dpop') {
      // Sent as DPoP, an unbound token would be refused upstream; sent as Bearer, it is not what was configured.
      throw new OAuthError('access_denied', 'the gateway could not obtain a token for the upstream', { status: 403, reason: `token exchange: the authorization server answered token_type ${String(body.token_type)}, not a DPoP-bound token` });
    }
    if (!response.ok || typeof body.access_token !== 'string') {
      throw new OAuthError('access_denied', 'the gateway could not obtain a token for the upstream', {
        status: 403,
        reason: `token exchange refused: ${body.error ?? response.status} ${body.error_description ?? ''}`.trim(),
      });
    }
    const lifetimeMs = (typeof body.expires_in === 'number' ? body.expires_in : 60) * 1000;
    // Refresh when 80 % of the lifetime has passed (at most 60 s early), so a token never expires in flight.
    const refreshAt = Date.now() + lifetimeMs - Math.min(lifetimeMs * 0.2, 60_000);
    if (this.cache.size >= (this.options.maxEntries ?? 10_000)) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(key, { token: body.access_token, refreshAt });
    return body.access_token;
  }
}
