import { exportJWK, importJWK, type JWK } from 'jose';
import { createDpopProof, generateDpopKey, jwkThumbprint, type DpopKey } from '../core/dpop.ts';
import type { CredentialStore } from './store.ts';

/** The agent's DPoP choice: `auto` = when the AS lists ES256 in `dpop_signing_alg_values_supported`. */
export type DpopSetting = 'auto' | 'always' | 'never';

/** The private JWK of a proof key as kept in the credentials file (0600). */
export type StoredDpopKey = JWK;

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];

/**
 * The agent's proof key for one registration (issuer + client id) and the nonces servers gave it
 * (RFC 9449 §8, §9: per origin — the AS and the MCP server each keep their own).
 */
export class AgentDpop {
  private readonly nonces = new Map<string, string>();

  private constructor(readonly key: DpopKey) {}

  static async generate(): Promise<{ signer: AgentDpop; stored: StoredDpopKey }> {
    const key = await generateDpopKey('ES256');
    return { signer: new AgentDpop(key), stored: { ...(await exportJWK(key.privateKey)), alg: 'ES256' } };
  }

  static async load(stored: StoredDpopKey): Promise<AgentDpop> {
    const alg = stored.alg ?? 'ES256';
    const privateKey = (await importJWK(stored, alg)) as CryptoKey;
    const publicJwk = Object.fromEntries(Object.entries(stored).filter(([name]) => !PRIVATE_MEMBERS.includes(name) && name !== 'key_ops' && name !== 'ext')) as JWK;
    return new AgentDpop({ privateKey, publicJwk, alg });
  }

  /** RFC 7638 thumbprint: the `dpop_jkt` of an authorization request, the token's `cnf.jkt`. */
  thumbprint(): Promise<string> {
    return jwkThumbprint(this.key.publicJwk);
  }

  /** A proof for one request: a new `jti` each time, the origin's last nonce, `ath` with a token. */
  proof(htm: string, htu: string, extra: { accessToken?: string; body?: Uint8Array } = {}): Promise<string> {
    const nonce = this.nonces.get(new URL(htu).origin);
    return createDpopProof(this.key, { htm, htu, ...extra, ...(nonce !== undefined ? { nonce } : {}) });
  }

  /** Keeps the nonce a response carries (`DPoP-Nonce`, on errors and successes alike, §8.2). */
  remember(url: string, nonce: string | null): void {
    if (nonce && /^[\x21\x23-\x5B\x5D-\x7E]+$/.test(nonce)) this.nonces.set(new URL(url).origin, nonce);
  }
}


/**
 * The agent's DPoP plumbing (RFC 9449): which proof key a client uses (made once per client id,
 * kept in the credentials file, 0600), which access tokens are bound to which key, and the
 * `Authorization` + `DPoP` headers of a request that carries a token.
 */
export class DpopKeys {
  /** Proof keys per issuer and client id, loaded from (or made and kept in) the store. */
  private readonly signers = new Map<string, AgentDpop>();
  /** Access tokens the AS bound to a proof key (`token_type: DPoP`), with that key. */
  private readonly bound = new Map<string, AgentDpop>();

  constructor(
    private readonly store: Pick<CredentialStore, 'get' | 'update'>,
    private readonly setting: DpopSetting = 'auto',
  ) {}

  /**
   * The client's proof key at `issuer` when DPoP is in use (`auto`: the AS lists ES256 in
   * `dpop_signing_alg_values_supported`), or `bound` (a token bound before must keep being proven
   * with its key).
   */
  async signerFor(issuer: string, metadata: Record<string, unknown>, clientId: string, bound = false): Promise<AgentDpop | undefined> {
    if (!bound && !this.wanted(metadata)) return undefined;
    const name = `${issuer} ${clientId}`;
    let signer = this.signers.get(name);
    if (signer) return signer;
    const stored = (await this.store.get(issuer))?.dpop_keys?.[clientId];
    if (stored) signer = await AgentDpop.load(stored);
    else {
      const made = await AgentDpop.generate();
      signer = made.signer;
      await this.store.update(issuer, (current) => ({ ...current, dpop_keys: { ...current?.dpop_keys, [clientId]: made.stored } }));
    }
    this.signers.set(name, signer);
    return signer;
  }

  /** Whether the setting asks for proofs at a server with this metadata. */
  wanted(metadata: Record<string, unknown>): boolean {
    if (this.setting === 'never') return false;
    if (this.setting === 'always') return true;
    const algorithms = metadata.dpop_signing_alg_values_supported;
    return Array.isArray(algorithms) && algorithms.includes('ES256');
  }

  bind(accessToken: string, signer: AgentDpop): void {
    this.bound.set(accessToken, signer);
  }

  boundTo(accessToken: string): AgentDpop | undefined {
    return this.bound.get(accessToken);
  }

  /**
   * The headers of a request carrying `token`: RFC 9449 §7.1, the DPoP scheme and a proof for this
   * request (`ath`; SEP-1932 `content_digest` of a body) when the token is bound; else Bearer.
   */
  async authorize(headers: Headers, token: string, method: string, url: string, body?: unknown): Promise<AgentDpop | undefined> {
    const signer = this.bound.get(token);
    if (!signer) {
      headers.set('authorization', `Bearer ${token}`);
      return undefined;
    }
    headers.set('authorization', `DPoP ${token}`);
    const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : undefined;
    headers.set('dpop', await signer.proof(method, url, { accessToken: token, ...(bytes ? { body: bytes } : {}) }));
    return signer;
  }
}
