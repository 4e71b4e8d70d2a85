import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { OAuthError } from '../../src/core/errors.ts';
import { assertValidRedirectUri, isLoopbackHttp, matchRedirectUri } from '../../src/core/redirect-uri.ts';
import { counted } from './count.ts';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?$/);
const segment = fc.stringMatching(/^[A-Za-z0-9._~-]{1,8}$/).filter((s) => s !== '.' && s !== '..');
const path = fc.array(segment, { maxLength: 3 }).map((parts) => `/${parts.join('/')}`);
const query = fc.option(fc.stringMatching(/^[a-z]{1,4}=[A-Za-z0-9]{0,4}$/), { nil: undefined }).map((q) => (q ? `?${q}` : ''));
const port = fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }).map((p) => (p ? `:${p}` : ''));

/** Redirect URIs a client may register: https, http on loopback, private-use schemes (RFC 8252 §7). */
const registered = fc
  .oneof(
    fc.tuple(fc.array(label, { minLength: 1, maxLength: 3 }), port, path, query).map(([labels, p, pa, q]) => `https://${labels.join('.')}.example${p}${pa}${q}`),
    fc.tuple(fc.constantFrom('127.0.0.1', 'localhost', '[::1]'), port, path, query).map(([host, p, pa, q]) => `http://${host}${p}${pa}${q}`),
    fc.tuple(fc.array(label, { minLength: 2, maxLength: 3 }), path).map(([labels, pa]) => `${labels.join('.')}:${pa}`),
  )
  .filter((uri) => {
    try {
      assertValidRedirectUri(uri);
      return true;
    } catch {
      return false;
    }
  });

const tricky = fc.constantFrom(...'/\\.%@#?:;*&=+ AaZz09-_~', '%2e', '%2F', '%00', '..', '/../', '/./', 'ı', 'K', '\u0000', '\t', '\n', '。', '%41', '@attacker.test', 'attacker.test');

/** Near misses: one small edit to a registered URI. */
const nearMiss = fc.tuple(registered, fc.nat(), fc.constantFrom('insert', 'delete', 'replace', 'case', 'encode', 'suffix', 'port', 'userinfo', 'fragment', 'dots'), tricky, fc.integer({ min: 1, max: 65535 })).map(
  ([uri, n, op, piece, newPort]) => {
    const at = n % (uri.length + 1);
    const char = uri[at] ?? '';
    const url = new URL(uri);
    switch (op) {
      case 'insert':
        return { uri, requested: uri.slice(0, at) + piece + uri.slice(at) };
      case 'delete':
        return { uri, requested: uri.slice(0, at) + uri.slice(at + 1) };
      case 'replace':
        return { uri, requested: uri.slice(0, at) + piece + uri.slice(at + 1) };
      case 'case':
        return { uri, requested: uri.slice(0, at) + (char === char.toUpperCase() ? char.toLowerCase() : char.toUpperCase()) + uri.slice(at + 1) };
      case 'encode':
        return { uri, requested: uri.slice(0, at) + `%${char.charCodeAt(0).toString(16).padStart(2, '0')}` + uri.slice(at + 1) };
      case 'suffix':
        return { uri, requested: uri + piece };
      case 'port':
        url.port = String(newPort);
        return { uri, requested: url.href };
      case 'userinfo':
        url.username = 'attacker';
        return { uri, requested: url.href };
      case 'fragment':
        return { uri, requested: `${uri}#${piece}` };
      default:
        return { uri, requested: uri.replace(/\/([^/]*)$/, '/x/../$1') };
    }
  },
);

function parse(uri: string): URL | undefined {
  try {
    return new URL(uri);
  } catch {
    return undefined;
  }
}

/** The one difference exact matching allows: the port of an http loopback URI (RFC 8252 §7.3). */
function portVariant(requested: string, uri: string): boolean {
  const reg = parse(uri);
  const req = parse(requested);
  if (!reg || !req || !isLoopbackHttp(reg)) return false;
  reg.port = req.port;
  return reg.href === requested;
}

/**
 * Redirect URI matching (src/core/redirect-uri.ts) is exact (OAuth 2.1 §2.3.1, RFC 9700 §4.1.3):
 * a URI matches itself, a near miss never matches (except a loopback port), and every match
 * agrees with WHATWG URL parsing on scheme, credentials, host, path, query and fragment.
 */
describe('fuzz: redirect URI matching', () => {
  it('a registered URI matches itself', () => {
    fc.assert(fc.property(registered, counted('redirect: self match', (uri: string) => assert.ok(matchRedirectUri(uri, [uri]), uri))), { numRuns: RUNS });
  });

  it('a loopback URI registered without a path matches on any port, and nothing else does', () => {
    const host = fc.constantFrom('127.0.0.1', 'localhost', '[::1]');
    fc.assert(
      fc.property(
        host,
        fc.integer({ min: 1, max: 65535 }),
        fc.integer({ min: 1, max: 65535 }),
        tricky,
        counted('redirect: loopback without a path', (h: string, registeredPort: number, requestedPort: number, piece: string) => {
          const uri = `http://${h}:${registeredPort}`;
          assert.ok(matchRedirectUri(`http://${h}:${requestedPort}`, [uri]));
          assert.ok(matchRedirectUri(`http://${h}:${requestedPort}/`, [uri]));
          // Digits would only make another port.
          if (!/^[0-9/]/.test(piece)) assert.ok(!matchRedirectUri(`http://${h}:${requestedPort}${piece}`, [uri]), `${piece} after ${uri}`);
        }),
      ),
      { numRuns: RUNS },
    );
  });

  it('near misses never match, but for a loopback port', () => {
    fc.assert(
      fc.property(
        nearMiss,
        counted('redirect: near misses', ({ uri, requested }: { uri: string; requested: string }) => {
          if (requested === uri) return;
          assert.equal(matchRedirectUri(requested, [uri]), portVariant(requested, uri), `${requested} against ${uri}`);
        }),
      ),
      { numRuns: RUNS },
    );
  });

  it('every match agrees with WHATWG URL parsing', () => {
    const requested = fc.oneof(nearMiss.map((m) => ({ uri: m.uri, requested: m.requested })), fc.tuple(registered, fc.string()).map(([uri, s]) => ({ uri, requested: s })));
    fc.assert(
      fc.property(
        requested,
        counted('redirect: WHATWG differential', ({ uri, requested: r }: { uri: string; requested: string }) => {
          if (!matchRedirectUri(r, [uri])) return;
          const a = parse(r);
          const b = parse(uri)!;
          assert.ok(a, `matched but not a URL: ${r}`);
          for (const part of ['protocol', 'username', 'password', 'hostname', 'pathname', 'search', 'hash'] as const) assert.equal(a[part], b[part], `${part}: ${r} vs ${uri}`);
          if (a.port !== b.port) assert.ok(isLoopbackHttp(b), `port differs off loopback: ${r} vs ${uri}`);
        }),
      ),
      { numRuns: RUNS },
    );
  });

  it('registration accepts only absolute https, loopback http or reverse-domain URIs, without fragment or wildcard', () => {
    const candidate = fc.oneof(fc.string(), registered, nearMiss.map((m) => m.requested), fc.webUrl({ withFragments: true, withQueryParameters: true }));
    fc.assert(
      fc.property(
        candidate,
        counted('redirect: registration rules', (uri: string) => {
          try {
            assertValidRedirectUri(uri);
          } catch (error) {
            assert.ok(error instanceof OAuthError && error.code === 'invalid_redirect_uri', `unexpected ${String(error)}`);
            return;
          }
          const url = parse(uri);
          assert.ok(url, `accepted a non-URL: ${uri}`);
          assert.ok(!uri.includes('#') && !uri.includes('*'), `accepted ${uri}`);
          assert.ok(!['javascript:', 'data:', 'file:', 'vbscript:', 'about:', 'blob:', 'filesystem:'].includes(url.protocol), `accepted ${uri}`);
          if (url.protocol === 'http:') assert.ok(isLoopbackHttp(url), `accepted http off loopback: ${uri}`);
          if (url.protocol !== 'http:' && url.protocol !== 'https:') assert.ok(url.protocol.includes('.'), `accepted a private scheme without a dot: ${uri}`);
        }),
      ),
      { numRuns: RUNS },
    );
  });
});
