import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';

/**
 * A stand-in enterprise IdP for the ID-JAG tests: an ES256 (and an RS256) key, its metadata and
 * JWKS on a loopback port, and `sign()` to forge ID-JAGs (or any JWT) with full control of header
 * and claims. `metadata` decides what `/.well-known/*` answers (tests of discovery).
 */
export interface FakeIdp {
  issuer: string;
  jwks: { keys: JWK[] };
  /** Requests seen, by path. */
  hits: string[];
  /** Metadata answers: `rfc8414` and `oidc` documents; `undefined` → 404. */
  metadata: { rfc8414?: Record<string, unknown>; oidc?: Record<string, unknown> };
  sign(claims: Record<string, unknown>, header?: { typ?: string; alg?: 'ES256' | 'RS256'; kid?: string }): Promise<string>;
  /** A new ES256 key replaces the old one in the JWKS (the old one can no longer verify). */
  rotate(): Promise<void>;
  close(): Promise<void>;
}

export interface KeyPair {
  privateKey: CryptoKey;
  jwk: JWK;
}

/** A signing key of a fake issuer and its public JWK (kid, alg, use: sig). */
export async function keyPair(alg: 'ES256' | 'RS256', kid: string): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

export async function startFakeIdp(options: { discovery?: 'rfc8414' | 'oidc' | 'none' } = {}): Promise<FakeIdp> {
  let es = await keyPair('ES256', 'es-1');
  const rs = await keyPair('RS256', 'rs-1');
  const hits: string[] = [];
  const idp = {} as FakeIdp;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    hits.push(path);
    const send = (status: number, body?: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(body === undefined ? '' : JSON.stringify(body));
    };
    if (path === '/jwks') return send(200, idp.jwks);
    if (path === '/.well-known/oauth-authorization-server' && idp.metadata.rfc8414) return send(200, idp.metadata.rfc8414);
    if (path === '/.well-known/openid-configuration' && idp.metadata.oidc) return send(200, idp.metadata.oidc);
    return send(404, { error: 'not_found' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const document = { issuer, jwks_uri: `${issuer}/jwks`, token_endpoint: `${issuer}/token` };
  const discovery = options.discovery ?? 'rfc8414';
  Object.assign(idp, {
    issuer,
    hits,
    jwks: { keys: [es.jwk, rs.jwk] },
    metadata: discovery === 'rfc8414' ? { rfc8414: document } : discovery === 'oidc' ? { oidc: document } : {},
    async sign(claims: Record<string, unknown>, header: { typ?: string; alg?: 'ES256' | 'RS256'; kid?: string } = {}) {
      const alg = header.alg ?? 'ES256';
      const key = alg === 'ES256' ? es : rs;
      return new SignJWT(claims).setProtectedHeader({ alg, typ: header.typ ?? 'oauth-id-jag+jwt', kid: header.kid ?? key.jwk.kid! }).sign(key.privateKey);
    },
    async rotate() {
      es = await keyPair('ES256', `es-${Date.now()}`);
      idp.jwks = { keys: [es.jwk, rs.jwk] };
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
  return idp;
}
