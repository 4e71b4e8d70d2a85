import type { Context } from 'hono';
import { upstreamPath, type UpstreamTarget } from '../filters/proxy.ts';
import { ResponseTap } from '../response-tap.ts';
import type { GatewayEnv } from '../types.ts';
import type { WebDependencies } from './app.ts';
import { signInFailedPage } from './pages.ts';
import type { CompiledWebRoute } from './route.ts';
import type { WebSession } from './store.ts';

/**
 * Mandate's own cookies (the AS's `mandate_session`, `mandate_ia_*`…, the gateway's): cookies are
 * scoped by host, not port, so where the AS and the gateway share a host name (the demo: localhost)
 * the browser sends the AS's sign-in session to the gateway too. None of them is the app's business.
 */
const MANDATE_COOKIE = /^(?:__Host-|__Secure-)?mandate_/i;

const isMandateCookie = (name: string, own: string[]) => own.includes(name) || MANDATE_COOKIE.test(name);

/**
 * The browser's Cookie header without the gateway's own cookies and Mandate's: the app never sees
 * a session (nor could it replay one). Its own cookies pass.
 */
export function appCookies(header: string | undefined, own: string[]): string | undefined {
  if (!header) return undefined;
  const kept = header
    .split(';')
    .map((part) => part.trim())
    .filter((part) => {
      const name = part.slice(0, part.indexOf('=') < 0 ? part.length : part.indexOf('=')).trim();
      return part && !isMandateCookie(name, own);
    });
  return kept.length > 0 ? kept.join('; ') : undefined;
}

/** Plain identity headers (`identity.headers`), for apps that cannot verify the assertion. */
function plainIdentity(session: WebSession): Record<string, string> {
  const headers: Record<string, string> = { 'x-mandate-sub': session.sub };
  // Header values must be visible ASCII: anything else is percent-encoded (RFC 3986 style).
  const value = (v: unknown) => encodeURIComponent(String(v)).replace(/%20/g, ' ').replace(/%40/g, '@');
  if (session.claims.preferred_username !== undefined) headers['x-mandate-username'] = value(session.claims.preferred_username);
  if (session.claims.name !== undefined) headers['x-mandate-name'] = value(session.claims.name);
  if (session.claims.email !== undefined) headers['x-mandate-email'] = value(session.claims.email);
  return headers;
}

/**
 * Forwards a request with a live session to the app: the gateway's cookies and every incoming
 * `X-Mandate-*` header removed (by `upstreamHeaders`), a fresh signed identity assertion added,
 * the access token only when `identity.access_token` says so.
 */
export async function forwardToApp(c: Context<GatewayEnv>, route: CompiledWebRoute, session: WebSession, deps: WebDependencies): Promise<Response> {
  const config = route.config;
  const upstream = new URL(config.upstream);
  const event = c.get('audit');
  let bytes: Uint8Array | undefined;
  if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
    const declared = Number(c.req.header('content-length') ?? '0');
    if (declared > config.max_body_bytes) return tooLarge(c);
    const body = new Uint8Array(await c.req.arrayBuffer());
    if (body.byteLength > config.max_body_bytes) return tooLarge(c);
    if (body.byteLength > 0 || c.req.header('content-length') !== undefined) bytes = body;
  }
  const extra: Record<string, string> = {};
  const own = [route.cookie.session, route.cookie.signIn];
  const cookies = appCookies(c.req.header('cookie'), own);
  if (cookies) extra.cookie = cookies;
  if (config.identity.assertion) {
    extra[config.identity.header.toLowerCase()] = await deps.signer.assert(session, { issuer: config.public_url, audience: route.audience, ttlSeconds: config.identity.ttl_seconds });
  }
  if (config.identity.headers) Object.assign(extra, plainIdentity(session));
  if (config.identity.access_token) c.set('upstreamAuthorization', `Bearer ${session.accessToken}`);
  const raw = c.req.url;
  const query = raw.indexOf('?');
  const target: UpstreamTarget = { origin: upstream.origin, path: pathFor(config, upstream)(c.req.path, query < 0 ? '' : raw.slice(query)), method: c.req.method, bytes };
  try {
    return await deps.forwarder.forward(c, target, {
      timeouts: config.timeouts,
      tap: () => new ResponseTap(undefined, undefined),
      responseHeaders: c.get('responseHeaders'),
      onSession: () => undefined,
      upstreamHeaders: extra,
      // Nor may the app set them: it could plant a session (the AS's too, on a shared host name).
      dropCookie: (name) => isMandateCookie(name, own),
    });
  } catch (error) {
    const failure = error as { status?: number; rejection?: string; message?: string };
    event.decision = 'error';
    event.rejection = failure.rejection ?? 'upstream_unavailable';
    event.reason = failure.message;
    const page = await signInFailedPage({ status: failure.status === 504 ? 504 : 502, title: 'The application is unavailable', message: 'The application is not answering right now.', retry: c.req.path });
    return c.body(page.body, page.status as 502, page.headers);
  }
}

const paths = new WeakMap<object, (path: string, search: string) => string>();
function pathFor(config: CompiledWebRoute['config'], upstream: URL) {
  let fn = paths.get(config);
  if (!fn) paths.set(config, (fn = upstreamPath(config, upstream)));
  return fn;
}

function tooLarge(c: Context<GatewayEnv>): Response {
  const event = c.get('audit');
  event.decision = 'deny';
  event.rejection = 'body_too_large';
  event.reason = 'the request body is larger than max_body_bytes';
  return c.text('request body too large', 413);
}
