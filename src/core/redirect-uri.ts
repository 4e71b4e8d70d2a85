import { OAuthError } from './errors.ts';

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);
const FORBIDDEN_SCHEMES = new Set(['javascript:', 'data:', 'file:', 'vbscript:', 'about:', 'blob:', 'filesystem:']);

function parse(uri: string): URL | undefined {
  try {
    return new URL(uri);
  } catch {
    return undefined;
  }
}

export function isLoopbackHttp(url: URL): boolean {
  return url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname);
}

/**
 * Registration-time rules for a redirect URI (OAuth 2.1 §2.3.1, RFC 8252 §7): absolute, no
 * fragment, no wildcard; https, or http on a loopback host, or a private-use scheme in
 * reverse-domain form.
 * Throws `invalid_redirect_uri` (RFC 7591 §3.2.2).
 */
export function assertValidRedirectUri(uri: string): void {
  const url = parse(uri);
  const fail = (why: string): never => {
    throw new OAuthError('invalid_redirect_uri', `redirect_uri ${JSON.stringify(uri)} ${why}`);
  };
  if (!url) return fail('is not an absolute URI');
  if (url.hash || uri.includes('#')) fail('must not contain a fragment');
  // RFC 9700 §2.1: no patterns. Matching is exact anyway; a `*` only misleads the registrant.
  if (uri.includes('*')) fail('must not contain a wildcard');
  if (FORBIDDEN_SCHEMES.has(url.protocol)) fail(`uses the forbidden scheme ${url.protocol}`);
  if (url.protocol === 'https:') return;
  if (url.protocol === 'http:') {
    if (!isLoopbackHttp(url)) fail('must use https unless it is a loopback address');
    return;
  }
  // RFC 8252 §7.1: private-use schemes are reverse domain names, e.g. com.example.app:/callback.
  if (!url.protocol.slice(0, -1).includes('.')) fail('uses a private-use scheme that is not in reverse-domain form');
}

/**
 * Exact matching of a requested redirect URI against the registered ones (OAuth 2.1 §2.3.1,
 * RFC 9700 §4.1.3), except that the port of an http loopback URI may vary (RFC 8252 §7.3): native
 * apps bind an ephemeral port. Only the port may differ: the requested string must equal the
 * registered URI with its port replaced, so no other spelling (`127.1`, `/x/../cb`, `HTTP:`)
 * that a URL parser would normalize to the same place is accepted.
 */
export function matchRedirectUri(requested: string, registered: readonly string[]): boolean {
  if (registered.includes(requested)) return true;
  const req = parse(requested);
  if (!req || !isLoopbackHttp(req)) return false;
  return registered.some((candidate) => {
    const reg = parse(candidate);
    if (!reg || !isLoopbackHttp(reg)) return false;
    reg.port = req.port;
    // A registration without a path (`http://127.0.0.1:3000`) is written back with its "/".
    return reg.href === requested || (!candidate.endsWith('/') && reg.href === `${requested}/`);
  });
}
