import { OAuthError } from '../core/errors.ts';
import { basicAuthorization } from '../core/encoding.ts';
import { TOKEN_EXCHANGE_GRANT, TOKEN_TYPES } from '../core/delegation.ts';
import { metadataUrl } from './token-validator.ts';

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
}

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

  constructor(private readonly options: MediatorOptions) {
    this.basic = basicAuthorization(options.clientId, options.clientSecret);
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
    try {
      const endpoint = this.options.tokenEndpoint ?? (await metadataUrl(this.options.metadata, 'token_endpoint'));
      response = await (this.options.fetch ?? fetch)(endpoint, {
        method: 'POST',
        headers: { authorization: this.basic, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: form.toString(),
        signal: AbortSignal.timeout(5_000),
      });
    } catch (error) {
      throw new OAuthError('temporarily_unavailable', 'the authorization server cannot be reached', { status: 503, reason: `token exchange: ${(error as Error).message}` });
    }
    const body = (await response.json().catch(() => ({}))) as { access_token?: string; expires_in?: number; error?: string; error_description?: string };
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
