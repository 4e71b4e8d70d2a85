import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, type CryptoKey } from 'jose';
import { keyPair } from './id-jag.ts';

/**
 * A stand-in workload platform (a Kubernetes cluster's service account issuer, a SPIFFE OIDC
 * discovery provider) for the workload identity tests: OpenID discovery at
 * `/.well-known/openid-configuration` (no RFC 8414 document, as Kubernetes) and its JWKS at
 * `/jwks`, on a loopback port; `sign()` issues workload JWTs with full control of header and
 * claims. Configure the AS with `allow_loopback: true` for it.
 */
export interface FakePlatformIssuer {
  issuer: string;
  /** Requests seen, by path. */
  hits: string[];
  /** The `issuer` its discovery document names (default: its own; set another to test the check). */
  documentIssuer: string;
  /** A workload JWT: `iss` = this issuer, `iat`/`exp` (10 min)/`jti` unless given; ES256 unless told. */
  sign(claims: Record<string, unknown>, header?: { alg?: 'ES256' | 'RS256' | 'HS256'; kid?: string; typ?: string | null; key?: CryptoKey | Uint8Array }): Promise<string>;
  /** A new ES256 key replaces the old one (the JWKS then lists only the new one and the RS256 key). */
  rotate(): Promise<void>;
  close(): Promise<void>;
}


export async function startFakePlatformIssuer(): Promise<FakePlatformIssuer> {
  let es = await keyPair('ES256', 'es-1');
  const rs = await keyPair('RS256', 'rs-1');
  let generation = 1;
  const platform = { hits: [] as string[] } as FakePlatformIssuer;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    platform.hits.push(path);
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (path === '/.well-known/openid-configuration') {
      return send(200, { issuer: platform.documentIssuer, jwks_uri: `${platform.issuer}/jwks`, response_types_supported: ['id_token'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['ES256', 'RS256'] });
    }
    if (path === '/jwks') return send(200, { keys: [es.jwk, rs.jwk] });
    return send(404, { error: 'not_found' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  Object.assign(platform, {
    issuer,
    documentIssuer: issuer,
    async sign(claims: Record<string, unknown>, header: { alg?: 'ES256' | 'RS256' | 'HS256'; kid?: string; typ?: string | null; key?: CryptoKey | Uint8Array } = {}) {
      const alg = header.alg ?? 'ES256';
      const pair = alg === 'RS256' ? rs : es;
      const now = Math.floor(Date.now() / 1000);
      const protectedHeader: Record<string, unknown> = { alg, kid: header.kid ?? pair.jwk.kid };
      if (header.typ !== null) protectedHeader.typ = header.typ ?? 'JWT';
      return new SignJWT({ iss: issuer, iat: now, exp: now + 600, jti: crypto.randomUUID(), ...claims })
        .setProtectedHeader(protectedHeader as { alg: string })
        .sign(header.key ?? pair.privateKey);
    },
    async rotate() {
      es = await keyPair('ES256', `es-${++generation}`);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
  return platform;
}
