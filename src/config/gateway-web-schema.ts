import { z } from 'zod';

/**
 * A gateway route of kind `web` (issue 15): the gateway is an OpenID Connect relying party for a
 * plain web app with no sign-in code of its own. Defaults are the safe choice; each is documented
 * where it is defined (docs/browser-sessions.md explains the flow).
 */

const milliseconds = z.number().int().positive();
/** A route path ending in `/`, so that `<path>callback` and the cookie `Path` stay inside it. */
const routePath = z.string().regex(/^\/(?:[^?#]*\/)?$/, 'a path starting and ending with /, e.g. /app/');
const subPath = z.string().regex(/^\/[^?#]*$/, 'a path starting with /');
/** RFC 6265 §4.1.1 cookie-name (a token); prefixes are added by the gateway, not written here. */
const cookieName = z
  .string()
  .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'a cookie name (RFC 6265 token)')
  .refine((name) => !/^__(host|secure)-/i.test(name), 'without the __Host-/__Secure- prefix: the gateway adds the strongest one the route allows');
const origin = z.string().refine((value) => {
  try {
    const url = new URL(value);
    return url.origin === value && (url.protocol === 'https:' || url.protocol === 'http:');
  } catch {
    return false;
  }
}, 'an origin: http(s)://host[:port], no path');

/** Plain http is accepted only where nobody else can listen in: the machine itself (the demo). */
export function isLoopbackUrl(value: string): boolean {
  const host = new URL(value).hostname;
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const oidcSchema = z.strictObject({
  issuer: z.url().describe('The authorization server (its OpenID Connect discovery document is read at start). https, or http on loopback only.'),
  client_id: z.string().min(1).describe("The gateway's client for this web app at the authorization server (redirect URI `public_url` + `redirect_path`)."),
  client_secret_env: z
    .string()
    .min(1)
    .optional()
    .describe('Environment variable holding the client secret (client_secret_basic). Unset: a public client (token_endpoint_auth_method none; PKCE still protects the code).'),
  scopes: z
    .array(z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/))
    .default(['openid', 'profile', 'email'])
    .refine((scopes) => scopes.includes('openid'), 'must include openid')
    .describe('Scopes asked for; openid is required. Add offline_access where the AS needs it for refresh tokens.'),
  redirect_path: subPath.optional().describe('Where the AS sends the browser back. Default: `<path>callback`.'),
  par: z
    .enum(['auto', 'required', 'off'])
    .default('auto')
    .describe('Pushed authorization requests (RFC 9126): auto uses them when the AS metadata has pushed_authorization_request_endpoint (or requires them), required refuses to start without, off never.'),
  userinfo: z.boolean().default(true).describe("After sign-in, also read the AS's userinfo endpoint and add its claims to the ID token's (ID token claims win)."),
});

const sessionSchema = z
  .strictObject({
    cookie_name: cookieName
      .default('mandate_web')
      .describe('Gets the __Host- prefix when public_url is https and the route path is /, else __Secure- when https.'),
    secret_env: z
      .string()
      .min(1)
      .optional()
      .describe('Environment variable holding the key the session cookie is sealed with (AES-256-GCM). Gateways sharing REDIS_URL must share it. Unset: <data_dir>/web-session.key (0600), or a key in memory.'),
    idle_seconds: z.number().int().min(60).default(1800).describe('A session unused this long ends (30 minutes).'),
    absolute_seconds: z.number().int().min(300).default(28_800).describe('A session ends this long after sign-in, used or not (8 hours).'),
    refresh_before_seconds: z
      .number()
      .int()
      .min(0)
      .default(30)
      .describe("The access token is refreshed this long before it expires (refresh token grant); when refreshing fails, the person signs in again."),
  })
  .prefault({});

const identitySchema = z
  .strictObject({
    assertion: z
      .boolean()
      .default(true)
      .describe('Forward a signed identity assertion (ES256 JWT, typ mandate-id+jwt) the app verifies against the gateway JWKS at /.well-known/mandate-gateway-jwks.json.'),
    header: z.string().regex(/^[A-Za-z0-9-]+$/).default('X-Mandate-Identity').describe('The header carrying the assertion.'),
    ttl_seconds: z.number().int().min(10).max(300).default(60).describe('Lifetime of each assertion (a new one per request).'),
    audience: z.string().min(1).optional().describe('The `aud` of the assertion. Default: the upstream URL.'),
    headers: z
      .boolean()
      .default(false)
      .describe('Also plain headers X-Mandate-Sub, X-Mandate-Username, X-Mandate-Name, X-Mandate-Email (for apps that cannot verify a JWT; they must be reachable only through the gateway). Incoming X-Mandate-* headers are always removed.'),
    access_token: z
      .boolean()
      .default(false)
      .describe("Forward the person's access token as Authorization: Bearer. Off: no token passthrough."),
  })
  .prefault({});

const logoutSchema = z
  .strictObject({
    path: subPath.optional().describe('Signs out: ends the gateway session, then RP-initiated logout at the AS end_session_endpoint when it has one. Default: `<path>logout`.'),
    backchannel_path: subPath.optional().describe('Receives OpenID Connect Back-Channel Logout 1.0 logout tokens from the AS. Default: `<path>backchannel-logout`.'),
    signed_out_path: subPath
      .optional()
      .describe("The gateway's \"signed out\" page, and the post_logout_redirect_uri (public_url + this) to register at the AS. Default: `<path>signed-out`."),
  })
  .prefault({});

export const webRouteSchema = z
  .strictObject({
    kind: z.literal('web').describe('A web app behind the gateway, signed in with OpenID Connect.'),
    path: routePath.describe('Path prefix the route serves, ending in /, e.g. /app/. The session cookie is scoped to it.'),
    upstream: z.url().describe('The web app the route fronts (no auth code of its own).'),
    rewrite: z.string().regex(/^\/[^?#]*$/).optional().describe('Replaces the path prefix before forwarding. Default: the upstream URL path + the rest of the request path.'),
    public_url: origin.describe('The gateway origin as browsers reach it, e.g. https://apps.example.com: the redirect URI is built on it, and https makes the cookie Secure.'),
    oidc: oidcSchema.describe('The authorization server and the client the gateway signs people in with.'),
    session: sessionSchema.describe('The gateway session (server-side; in Redis when REDIS_URL is set).'),
    rules: z
      .array(z.strictObject({ allow: z.string().min(1), reason: z.string().optional() }))
      .default([])
      .describe('CEL rules every request must pass, over claims (ID token + userinfo), sub, path (below the route, starting with /), http_method, route. False, an error, or a non-boolean → 403 page, audited with the reason (seed 004: role claims → allowed paths).'),
    identity: identitySchema.describe('What the upstream learns about the person.'),
    logout: logoutSchema.describe('Signing out, at the gateway and at the AS.'),
    max_body_bytes: z.number().int().positive().default(10_485_760).describe('Largest request body forwarded; larger → 413.'),
    timeouts: z
      .strictObject({
        connect_ms: milliseconds.default(5_000),
        response_ms: milliseconds.default(30_000).describe('Until the upstream answers with headers (504 after).'),
        idle_ms: milliseconds.default(300_000).describe('Longest silence while the answer streams.'),
      })
      .prefault({}),
  })
  .superRefine((route, context) => {
    for (const [key, value] of [
      ['oidc.issuer', route.oidc.issuer],
      ['public_url', route.public_url],
    ] as const) {
      if (value.startsWith('http:') && !isLoopbackUrl(value)) {
        context.addIssue({ code: 'custom', path: key.split('.'), message: `${key} must be https (plain http only on localhost / 127.0.0.1 / [::1])` });
      }
    }
    if (route.session.idle_seconds > route.session.absolute_seconds) {
      context.addIssue({ code: 'custom', path: ['session', 'idle_seconds'], message: 'idle_seconds cannot be longer than absolute_seconds' });
    }
    const own = [
      ['oidc', 'redirect_path', route.oidc.redirect_path],
      ['logout', 'path', route.logout.path],
      ['logout', 'backchannel_path', route.logout.backchannel_path],
      ['logout', 'signed_out_path', route.logout.signed_out_path],
    ] as const;
    for (const [section, key, value] of own) {
      if (value !== undefined && !value.startsWith(route.path)) {
        context.addIssue({ code: 'custom', path: [section, key], message: `${section}.${key} must be under the route path ${route.path} (the session cookie is scoped to it)` });
      }
    }
  });

/** The gateway's own paths of a web route, defaults filled in. */
export function webRoutePaths(route: z.output<typeof webRouteSchema>) {
  return {
    callback: route.oidc.redirect_path ?? `${route.path}callback`,
    logout: route.logout.path ?? `${route.path}logout`,
    backchannel: route.logout.backchannel_path ?? `${route.path}backchannel-logout`,
    signedOut: route.logout.signed_out_path ?? `${route.path}signed-out`,
  };
}

/** Where the gateway serves the public keys of its identity assertions (one set for every web route). */
export const IDENTITY_JWKS_PATH = '/.well-known/mandate-gateway-jwks.json';
