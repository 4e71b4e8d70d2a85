import { basicAuthorization } from '../core/encoding.ts';

/**
 * The authorization server's transaction endpoints, as the gateway calls them (issue 14 contract):
 * `POST <issuer>/transactions` and `POST <issuer>/transactions/{id}/use`, authenticated with the
 * gateway's client (client_secret_basic). The caller's own access token goes along as
 * `subject_token`: the AS takes the user, the client and the actor chain from it, never from the
 * gateway.
 */

export interface TransactionClientOptions {
  /** The route's token issuer: the endpoints are `<issuer>/transactions…`. */
  issuer: string;
  clientId: string;
  clientSecret: string;
  fetch?: typeof fetch;
  /** Per call; default 5 s. */
  timeoutMs?: number;
}

export interface NewTransaction {
  subjectToken: string;
  tool: string;
  argumentsHash: string;
  summary: string;
  details: Record<string, unknown>;
  lifetimeSeconds: number;
}

export interface CreatedTransaction {
  id: string;
  approvalUri: string;
  /** Epoch seconds. */
  expiresAt: number;
}

/** What `/use` said: used (let the call through once), still pending, or refused with the AS's error. */
export type UseOutcome = { status: 'used' } | { status: 'pending' } | { status: 'refused'; error: string; description?: string };

/**
 * The AS could not be reached, timed out, or failed (5xx, a redirect, or an answer of the wrong
 * shape: a proxy's or a maintenance page's 200 must never release a held call).
 */
export class TransactionsUnavailable extends Error {
  override name = 'TransactionsUnavailable';
}

/** The AS refused to create the transaction (4xx): e.g. the caller's token is no longer active. */
export class TransactionNotCreated extends Error {
  override name = 'TransactionNotCreated';
  constructor(readonly status: number, readonly error: string, description?: string) {
    super(`the authorization server refused the transaction: ${status} ${error}${description ? ` (${description})` : ''}`);
  }
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function httpUrl(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    const url = new URL(value);
    // It is shown to the user and quoted in WWW-Authenticate: no quote or backslash may survive.
    return (url.protocol === 'https:' || url.protocol === 'http:') && !/["\\]/.test(url.href) ? url.href : undefined;
  } catch {
    return undefined;
  }
}

export class TransactionClient {
  private readonly endpoint: string;
  private readonly authorization: string;

  constructor(private readonly options: TransactionClientOptions) {
    this.endpoint = `${options.issuer.replace(/\/+$/, '')}/transactions`;
    this.authorization = basicAuthorization(options.clientId, options.clientSecret);
  }

  private async post(url: string, body: Record<string, unknown>): Promise<{ status: number; json: Record<string, unknown> }> {
    let response: Response;
    try {
      response = await (this.options.fetch ?? fetch)(url, {
        method: 'POST',
        headers: { authorization: this.authorization, 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(body),
        // A redirect is no answer of the AS's: whatever its target says (a login or maintenance page) must
        // not count. `manual`, checked below, not `error`: workerd refuses `redirect: 'error'`.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 5_000),
      });
    } catch (error) {
      const cause = (error as Error).cause as Error | undefined;
      throw new TransactionsUnavailable(`${url}: ${(error as Error).message}${cause?.message ? ` (${cause.message})` : ''}`);
    }
    if ((response.status >= 300 && response.status < 400) || response.type === 'opaqueredirect') {
      await response.body?.cancel();
      throw new TransactionsUnavailable(`${url}: fetch failed (unexpected redirect)`);
    }
    if (response.status >= 500) {
      await response.body?.cancel();
      throw new TransactionsUnavailable(`${url} answered ${response.status}`);
    }
    const json = await response.json().catch(() => undefined);
    return { status: response.status, json: isObject(json) ? json : {} };
  }

  /** Creates a pending transaction; throws `TransactionsUnavailable` or `TransactionNotCreated`. */
  async create(input: NewTransaction): Promise<CreatedTransaction> {
    const { status, json } = await this.post(this.endpoint, {
      subject_token: input.subjectToken,
      tool: input.tool,
      arguments_hash: input.argumentsHash,
      summary: input.summary,
      details: input.details,
      lifetime_seconds: input.lifetimeSeconds,
    });
    if (status >= 400) throw new TransactionNotCreated(status, typeof json.error === 'string' ? json.error : 'unknown', typeof json.error_description === 'string' ? json.error_description : undefined);
    const approvalUri = httpUrl(json.approval_uri);
    // The page is the AS's own: the person signs in there, so a link elsewhere would be a phishing page.
    const onIssuer = approvalUri !== undefined && new URL(approvalUri).origin === new URL(this.options.issuer).origin;
    if (status !== 201 || typeof json.id !== 'string' || !/^[A-Za-z0-9_-]{1,200}$/.test(json.id) || !onIssuer || typeof json.expires_at !== 'number' || !Number.isFinite(json.expires_at)) {
      throw new TransactionsUnavailable(`${this.endpoint} answered ${status} without a JSON id, approval_uri on ${new URL(this.options.issuer).origin} and expires_at`);
    }
    return { id: json.id, approvalUri, expiresAt: json.expires_at };
  }

  /**
   * Spends an approved transaction for this call (the AS checks the token's user, client and chain
   * and the hash, and moves approved → used atomically). Throws `TransactionsUnavailable`.
   */
  async use(id: string, subjectToken: string, argumentsHash: string): Promise<UseOutcome> {
    const { status, json } = await this.post(`${this.endpoint}/${encodeURIComponent(id)}/use`, { subject_token: subjectToken, arguments_hash: argumentsHash });
    if (status < 400) {
      // Only the AS's own record of this use lets the call through: a 200 of any other shape
      // (a proxy's page, another transaction, another action) is an AS that cannot be trusted now.
      if (status === 200 && json.status === 'used' && json.id === id && json.arguments_hash === argumentsHash) return { status: 'used' };
      throw new TransactionsUnavailable(`${this.endpoint}/${id}/use answered ${status} without the used transaction ${id} for this arguments_hash`);
    }
    const error = typeof json.error === 'string' ? json.error : status === 404 ? 'not_found' : `http_${status}`;
    if (status === 409 && error === 'transaction_pending') return { status: 'pending' };
    return { status: 'refused', error, description: typeof json.error_description === 'string' ? json.error_description : undefined };
  }
}
