/**
 * A deliberately strict (and, on request, faulty) authorization server and MCP server in one
 * node:http process, for black-box tests of the agent SDK on what the published conformance suite
 * (0.1.16) does not cover: DPoP (RFC 9449) with nonces at the AS and the resource, RFC 9207 `iss`.
 * It records every request and judges each DPoP proof with the project's verifier (§4.3 checks,
 * `ath`, `cnf.jkt`); what it finds wrong lands in `problems`.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { decodeProtectedHeader, decodeJwt } from 'jose';
import { DpopError, verifyDpopProof } from '../../src/core/dpop.ts';

export interface StrictAsOptions {
  /** `authorization_response_iss_parameter_supported` in the metadata. */
  issAdvertised?: boolean;
  /** What the authorization response carries as `iss`. */
  iss?: 'correct' | 'missing' | 'wrong';
  /** Advertise DPoP (ES256), bind tokens to proofs, and have the MCP server require the DPoP scheme. */
  dpop?: boolean;
  /** The AS answers a nonce-less proof with 400 use_dpop_nonce (RFC 9449 §8). */
  asNonce?: boolean;
  /** The MCP server answers a nonce-less proof with 401 use_dpop_nonce (RFC 9449 §9). */
  rsNonce?: boolean;
  /** The answer to a jwt-bearer (workload identity, SEP-1933) token request: an OAuth error, or a token. */
  wifError?: 'invalid_grant' | 'invalid_scope' | 'unauthorized_client';
  /** The IdP's `issued_token_type` at `/idp/token` (an enterprise IdP, RFC 8693); default the ID-JAG type. */
  idpIssuedTokenType?: string;
  /** Faulty: the AS metadata names this issuer instead of its own (RFC 8414 §3.3 mix-up). */
  metadataIssuer?: string;
  /** Faulty: ignores DPoP proofs and issues Bearer tokens whatever the client sent. */
  ignoreDpop?: boolean;
  /** The registration response (RFC 7591): its `token_endpoint_auth_method` and secret. */
  registration?: { token_endpoint_auth_method?: string; client_secret?: string };
  scopesSupported?: string[];
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  form: Record<string, string>;
  query: Record<string, string>;
}

export interface StrictAs {
  origin: string;
  issuer: string;
  mcpUrl: string;
  requests: RecordedRequest[];
  /** What the judge found wrong (an empty list is the agent's pass). */
  problems: string[];
  /** The `jti` of every proof seen, in order, with where it went. */
  proofs: { path: string; jti: string; nonce?: string }[];
  close(): Promise<void>;
}

const AS_NONCE = 'as-nonce-1';
const RS_NONCE = 'rs-nonce-1';

export async function startStrictAs(options: StrictAsOptions = {}): Promise<StrictAs> {
  const requests: RecordedRequest[] = [];
  const problems: string[] = [];
  const proofs: StrictAs['proofs'] = [];
  const codes = new Map<string, { jkt?: string; resource?: string; redirectUri?: string }>();
  const tokens = new Map<string, { jkt?: string }>();
  let origin = '';

  /** Judges a proof; its jkt, or undefined (a problem recorded) when it is not valid. */
  async function judge(path: string, header: string | string[] | undefined, url: string, method: string, accessToken?: string): Promise<{ jkt: string; nonce?: string } | undefined> {
    try {
      const proof = await verifyDpopProof(header, { method, url, accessToken, algorithms: ['ES256'], maxAgeSeconds: 300, now: Math.floor(Date.now() / 1000) });
      const claims = decodeJwt(String(header));
      const nonce = typeof claims.nonce === 'string' ? claims.nonce : undefined;
      if (proofs.some((seen) => seen.jti === proof.jti)) problems.push(`${path}: jti ${proof.jti} used twice`);
      proofs.push({ path, jti: proof.jti, ...(nonce ? { nonce } : {}) });
      if (decodeProtectedHeader(String(header)).typ !== 'dpop+jwt') problems.push(`${path}: typ`);
      return { jkt: proof.jkt, ...(nonce ? { nonce } : {}) };
    } catch (error) {
      problems.push(`${path}: invalid proof (${error instanceof DpopError ? error.reason : (error as Error).message})`);
      return undefined;
    }
  }

  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (chunk) => (raw += chunk));
    req.on('end', () => {
      void (async () => {
        const url = new URL(req.url!, origin);
        const form = req.headers['content-type']?.includes('application/x-www-form-urlencoded') ? Object.fromEntries(new URLSearchParams(raw)) : {};
        requests.push({ method: req.method!, path: url.pathname, headers: req.headers, form, query: Object.fromEntries(url.searchParams) });
        const json = (status: number, body: unknown, headers: Record<string, string> = {}) => res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
        const issuer = origin;
        switch (url.pathname) {
          case '/.well-known/oauth-protected-resource/mcp':
            return json(200, { resource: `${origin}/mcp`, authorization_servers: [issuer], ...(options.dpop ? { dpop_signing_alg_values_supported: ['ES256'], dpop_bound_access_tokens_required: true } : {}) });
          case '/.well-known/oauth-authorization-server':
            return json(200, {
              issuer: options.metadataIssuer ?? issuer,
              authorization_endpoint: `${origin}/authorize`,
              token_endpoint: `${origin}/token`,
              registration_endpoint: `${origin}/register`,
              code_challenge_methods_supported: ['S256'],
              token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
              ...(options.scopesSupported ? { scopes_supported: options.scopesSupported } : {}),
              ...(options.issAdvertised ? { authorization_response_iss_parameter_supported: true } : {}),
              ...(options.dpop ? { dpop_signing_alg_values_supported: ['ES256'] } : {}),
            });
          case '/register': {
            const body = JSON.parse(raw) as Record<string, unknown>;
            return json(201, { client_id: `client-${randomUUID()}`, ...body, ...options.registration });
          }
          case '/authorize': {
            const q = url.searchParams;
            const code = randomUUID();
            codes.set(code, { jkt: options.ignoreDpop ? undefined : (q.get('dpop_jkt') ?? undefined), resource: q.get('resource') ?? undefined, redirectUri: q.get('redirect_uri') ?? undefined });
            const back = new URL(q.get('redirect_uri')!);
            back.searchParams.set('code', code);
            back.searchParams.set('state', q.get('state') ?? '');
            const iss = options.iss ?? 'correct';
            if (iss !== 'missing') back.searchParams.set('iss', iss === 'correct' ? issuer : 'http://127.0.0.1:1/evil');
            return res.writeHead(302, { location: back.href }).end();
          }
          case '/token': {
            let jkt: string | undefined;
            if (req.headers.dpop && !options.ignoreDpop) {
              const proof = await judge('/token', req.headers.dpop, `${origin}/token`, 'POST');
              if (!proof) return json(400, { error: 'invalid_dpop_proof' });
              if (options.asNonce && proof.nonce !== AS_NONCE) return json(400, { error: 'use_dpop_nonce', error_description: 'a nonce is required' }, { 'dpop-nonce': AS_NONCE });
              jkt = proof.jkt;
            } else if (options.dpop) problems.push(`/token ${form.grant_type}: no DPoP proof`);
            if (form.grant_type === 'urn:ietf:params:oauth:grant-type:jwt-bearer' && options.wifError) return json(400, { error: options.wifError, error_description: `refused: ${options.wifError}` });
            if (form.grant_type === 'authorization_code') {
              const code = codes.get(form.code ?? '');
              codes.delete(form.code ?? '');
              if (!code) return json(400, { error: 'invalid_grant' });
              if (code.jkt && code.jkt !== jkt) return json(400, { error: 'invalid_grant', error_description: 'the code is bound to another key' });
              if (code.resource !== form.resource) problems.push(`/token: resource ${form.resource} is not the authorization request's ${code.resource}`);
            }
            const token = randomUUID();
            tokens.set(token, { jkt });
            return json(200, { access_token: token, token_type: jkt ? 'DPoP' : 'Bearer', expires_in: 3600, refresh_token: randomUUID() }, options.asNonce ? { 'dpop-nonce': AS_NONCE } : {});
          }
          case '/idp/token':
            return json(200, { access_token: 'id-jag-from-idp', issued_token_type: options.idpIssuedTokenType ?? 'urn:ietf:params:oauth:token-type:id-jag', token_type: 'N_A' });
          case '/mcp': {
            const authorization = req.headers.authorization ?? '';
            const challenge = `resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"`;
            if (req.method !== 'POST') return res.writeHead(405).end();
            const [scheme, token = ''] = authorization.split(' ');
            const known = tokens.get(token);
            if (!known) return json(401, {}, { 'www-authenticate': `Bearer ${challenge}` });
            if (known.jkt) {
              if (scheme !== 'DPoP') {
                problems.push(`/mcp: a DPoP-bound token sent as ${scheme}`);
                return json(401, {}, { 'www-authenticate': 'Bearer error="invalid_token"' });
              }
              const proof = await judge('/mcp', req.headers.dpop, `${origin}/mcp`, 'POST', token);
              if (!proof) return json(401, {}, { 'www-authenticate': 'DPoP error="invalid_dpop_proof", algs="ES256"' });
              if (proof.jkt !== known.jkt) problems.push('/mcp: the proof key is not the token’s cnf.jkt');
              if (options.rsNonce && proof.nonce !== RS_NONCE) return json(401, {}, { 'www-authenticate': 'DPoP error="use_dpop_nonce", algs="ES256"', 'dpop-nonce': RS_NONCE });
            }
            const message = JSON.parse(raw) as { id?: number; method: string; params?: { protocolVersion?: string } };
            if (message.id === undefined) return res.writeHead(202).end();
            const result =
              message.method === 'initialize'
                ? { protocolVersion: message.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'strict', version: '1' } }
                : message.method === 'tools/list'
                  ? { tools: [{ name: 'test-tool', inputSchema: { type: 'object' } }] }
                  : { content: [{ type: 'text', text: 'ok' }] };
            return json(200, { jsonrpc: '2.0', id: message.id, result });
          }
          default:
            return json(404, { error: 'not_found' });
        }
      })().catch((error: unknown) => {
        problems.push(`server error: ${(error as Error).message}`);
        res.writeHead(500).end();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    issuer: origin,
    mcpUrl: `${origin}/mcp`,
    requests,
    problems,
    proofs,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}
