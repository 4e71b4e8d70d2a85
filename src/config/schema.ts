import { z } from 'zod';
import { logoutConfigSchema } from './logout-schema.ts';
import { ADMIN_SCOPES, isAdminScope } from '../admin/scopes.ts';
import { rememberMeSchema } from './remember-schema.ts';
import { ASYMMETRIC_ALGORITHMS, dpopConfigSchema, idJagSchema, trustedIdpsSchema, workloadIdentitySchema } from './federation-schema.ts';

/**
 * The authorization server's configuration: the one source of truth. Types are inferred from it
 * and `schema/auth-server.schema.json` is generated from it (`npm run schema`; a test keeps the two
 * in sync). Every object is strict: an unknown key is an error, not a silent typo. Defaults are
 * documented where they are defined.
 */

const seconds = z.number().int().positive();

export { ASYMMETRIC_ALGORITHMS };

/** An entity profile value (draft-mora-oauth-entity-profiles): space-separated tokens such as `ai_agent` or `service`. */
const entityProfiles = z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+(?: [\x21\x23-\x5B\x5D-\x7E]+)*$/, 'space-separated entity profiles, such as "service" or "ai_agent"');

/** A client's platform identity (issue 17, SEP-1933): the (iss, sub) of its workload JWTs. */
const clientWorkloadIdentitySchema = z.strictObject({
  issuer: z.url().describe('The platform issuer (listed in workload_identity.issuers) whose JWTs identify this client.'),
  subject: z.string().min(1).describe('The `sub` those JWTs carry, e.g. system:serviceaccount:agents:planner or spiffe://example.org/agent.'),
  claims: z
    .record(z.string(), z.union([z.string(), z.number(), z.boolean()]))
    .default({})
    .describe('Other claims the JWT must carry with exactly these values (e.g. a Kubernetes namespace).'),
});

const scopeSchema = z.strictObject({
  name: z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, 'a scope token (RFC 6749 §3.3)'),
  description: z
    .string()
    .optional()
    .describe('Shown on the consent page. openid, profile, email and offline_access have built-in descriptions (src/auth-server/pages/strings.ts).'),
  high_risk: z
    .boolean()
    .default(false)
    .describe(
      'Stands out on the consent page. An unverified client (self-registered, or a metadata document on a host not in client_id_metadata_documents.verified_hosts) gets it only when the user ticks it.',
    ),
});

/** A CSS hex colour and nothing else: it is written into the pages' style sheet. */
const hexColor = z.string().regex(/^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$/, 'a CSS hex colour such as #2f5bea');

/**
 * Whether an https URL's host is a plain host name or IPv4 address with an optional port: its
 * origin goes into the pages' CSP `img-src`, where `*`, `%`, `;` or `,` would widen or break it.
 */
function plainHttpsOrigin(v: string): boolean {
  try {
    const url = new URL(v);
    return url.protocol === 'https:' && /^[a-z0-9.-]+$/.test(url.hostname) && /^[a-z0-9.-]+(?::\d{1,5})?$/.test(url.host);
  } catch {
    return false;
  }
}

/** Images the pages may show: an https URL or an inline data: image (no javascript:, no http:). */
const logoUrl = z
  .string()
  .max(100_000)
  .refine(
    (v) => /^data:image\/(?:png|jpeg|gif|webp|svg\+xml);base64,[A-Za-z0-9+/]+={0,2}$/.test(v) || (/^https:\/\/[^\s"'<>()\\]+$/.test(v) && plainHttpsOrigin(v)),
    'an https: URL on a plain host name (letters, digits, dots, hyphens, optional port) or a base64 data:image/(png|jpeg|gif|webp|svg+xml) URI',
  );

/**
 * A host listed as verified, normalised as a URL parser sees it (lower case, IDNA), so it compares
 * with a document URL's host: a URL, a path, a port, a wildcard or anything but a host name is refused.
 */
function normalHost(h: string): string | undefined {
  // Only letters (any script), digits, dots and hyphens: no scheme, port, path, escape or wildcard.
  if (!/^(?:[A-Za-z0-9.-]|[^\p{ASCII}])+$/u.test(h)) return undefined;
  try {
    const { hostname } = new URL(`https://${h}`);
    return /^[a-z0-9.-]+$/.test(hostname) && !hostname.startsWith('.') && !hostname.endsWith('.') && !hostname.includes('..') ? hostname : undefined;
  } catch {
    return undefined;
  }
}

const verifiedHost = z
  .string()
  .refine((h) => normalHost(h) !== undefined, { error: (issue) => `a host name such as apps.example.com (no scheme, path, port or wildcard); got ${JSON.stringify(issue.input)}` })
  .overwrite((h) => normalHost(h) ?? h);

export const brandingSchema = z.strictObject({
  product_name: z.string().min(1).max(60).default('Mandate').describe('Shown in the header and title of every page.'),
  logo_url: logoUrl
    .optional()
    .describe('Logo in the page header: a base64 data:image URI (nothing is fetched) or an https URL (the pages then load it from that origin, which the CSP allows alone).'),
  primary_color: hexColor.default('#2f5bea').describe('Colour of the primary button (Allow, Sign in) and links, as a CSS hex colour.'),
  primary_color_dark: hexColor.optional().describe('The primary colour in dark mode; primary_color when omitted.'),
  support_url: z
    .string()
    .regex(/^(?:https:\/\/|mailto:)[^\s"'<>\\]+$/, 'an https: or mailto: URL')
    .optional()
    .describe('A "Help" link in the footer of every page (https: or mailto:).'),
});

const clientRef = z.string().min(1);

export const resourceSchema = z.strictObject({
  id: z.url().describe('The resource identifier (RFC 8707): the `aud` of tokens issued for it.'),
  name: z.string().describe('Human-readable name, shown on the consent page.'),
  scopes: z.array(scopeSchema).default([]),
  access_token_ttl: seconds.optional().describe('Overrides tokens.access_token_ttl for this resource.'),
  token_format: z.enum(['jwt', 'opaque']).default('jwt').describe('opaque tokens are random strings that resource servers introspect.'),
  may_act: z
    .union([z.literal('requesting_client'), z.strictObject({ client_id: clientRef })])
    .optional()
    .describe('Who may exchange tokens issued for this resource (RFC 8693 may_act): a named client, or `requesting_client` — the client the token is issued to (an agent).'),
  claims: z
    .record(z.string(), z.string())
    .default({})
    .describe('Claim mappings: claim name → CEL expression over subject, actor, client, user, request; a null result removes the claim. iss, aud, exp, iat, nbf, jti, client_id and scope cannot be mapped.'),
  exchange: z
    .strictObject({
      allowed_actors: z.array(clientRef).optional().describe('Clients that may appear in the act chain of a token for this resource; any client when omitted.'),
      max_depth: z.number().int().min(1).max(10).default(1).describe('Longest act chain a token for this resource may carry.'),
      require_may_act: z.boolean().default(true).describe('Exchange into this resource needs the subject token to name the actor in may_act. Turning it off allows delegation the user never granted.'),
    })
    .prefault({}),
  resource_servers: z
    .array(clientRef)
    .default([])
    .describe("Clients that serve this resource (its resource server, or the gateway in front of it): they may introspect tokens whose aud is this resource, and read the revocation list."),
  require_dpop: z
    .boolean()
    .default(false)
    .describe(`Tokens for this resource are issued only DPoP-bound (RFC 9449): a token request without a DPoP proof is refused with invalid_request.`),
});

export const agreementSchema = z.strictObject({
  id: z.string().min(1),
  name: z.string(),
  version: z.number().int().min(1).describe('Raise it when the text changes: every user is asked again.'),
  text: z.string().min(1),
  reconsent_days: z.number().int().min(1).optional().describe('Ask again after this many days.'),
});

export const authenticationPolicySchema = z.strictObject({
  name: z.string().min(1).describe('Becomes the `acr` of tokens issued after it.'),
  steps: z
    .array(z.union([z.literal('login'), z.strictObject({ agreement: z.string() })]))
    .min(1)
    .describe('Ordered steps: `login`, then e.g. `{ agreement: <id> }`.'),
});

export const userSchema = z.strictObject({
  username: z.string().min(1),
  sub: z.string().optional().describe('Stable subject identifier; generated on first start when omitted.'),
  name: z.string().optional(),
  email: z.string().optional(),
  password_hash: z.string().optional().describe('scrypt hash from `mandate hash-password`.'),
  password_env: z.string().optional().describe('Name of an environment variable holding the password.'),
  generate_password: z
    .boolean()
    .default(false)
    .describe('With neither password_hash nor password_env: a password is generated on first start into data_dir/secrets/<username>.password (mode 0600) and kept there.'),
  roles: z
    .array(z.string().refine((r) => isAdminScope(r), { message: `an admin role: ${ADMIN_SCOPES.join(', ')}` }))
    .default([])
    .describe('Admin roles (docs/admin.md): admin:read, admin:write, or admin:<area>:read|write. A token for the admin resource (<issuer>/admin) carries only the admin scopes these allow.'),
});

export const staticClientSchema = z.strictObject({
  client_id: z.string().min(1),
  client_name: z.string().optional(),
  client_secret_env: z
    .string()
    .optional()
    .describe('Environment variable holding the secret. When unset, a secret is generated on first start and written to the data dir.'),
  token_endpoint_auth_method: z.enum(['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt']).default('client_secret_basic'),
  redirect_uris: z.array(z.string()).default([]),
  grant_types: z
    .array(
      z.enum([
        'authorization_code',
        'refresh_token',
        'client_credentials',
        'urn:ietf:params:oauth:grant-type:token-exchange',
        'urn:ietf:params:oauth:grant-type:device_code',
        'urn:ietf:params:oauth:grant-type:jwt-bearer',
      ]),
    )
    .default(['authorization_code', 'refresh_token'])
    .describe('The grants the client may use. urn:ietf:params:oauth:grant-type:jwt-bearer (RFC 7523: ID-JAG, workload JWTs) is refused as unsupported until trusted_idps or workload_identity.issuers is set.'),
  scope: z.string().optional().describe('Space-separated scopes the client may request; any scope of a resource when omitted.'),
  default_resource: z.url().optional(),
  jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())) }).optional(),
  jwks_uri: z.url().optional(),
  authentication_policy: z.string().optional().describe('Name of the authentication policy users go through when signing in through this client.'),
  introspection: z
    .enum(['allowed'])
    .optional()
    .describe('allowed: the client may introspect any token and read the revocation list (a security tool). Without it a client introspects only tokens issued to it and, as a resource server, tokens for its resources.'),
  transactions: z
    .enum(['allowed', 'denied'])
    .default('denied')
    .describe('allowed: the client (a gateway) may ask users to approve high-risk tool calls at /transactions, for tokens its callers present (docs/high-risk-actions.md). A confidential client only.'),
  tool_pins: z
    .enum(['allowed', 'denied'])
    .default('denied')
    .describe('allowed: the client (a gateway) may report the tool definitions its upstreams list and read their pins at /tool-pins (docs/gateway.md "Tool pinning"), for the resources that list it in resource_servers only. A confidential client only.'),
  post_logout_redirect_uris: z
    .array(z.string())
    .default([])
    .describe('Where /logout may send the browser after signing out (OpenID Connect RP-Initiated Logout 1.0): exact URLs, http or https, no fragment.'),
  backchannel_logout_uri: z
    .string()
    .optional()
    .describe("The client's back-channel logout endpoint (OpenID Connect Back-Channel Logout 1.0): a logout token is POSTed there when a session it got a grant in ends. http or https, no fragment; loopback and private addresses are allowed for configured clients."),
  backchannel_logout_session_required: z
    .boolean()
    .default(false)
    .describe('Whether the client needs sid in logout tokens. Mandate always sends both sub and sid.'),
  require_pushed_authorization_requests: z
    .boolean()
    .default(false)
    .describe('The client must push its authorization requests to /par (RFC 9126 §6); /authorize without a request_uri is refused with invalid_request.'),
  first_party: z
    .boolean()
    .default(false)
    .describe('A client of this deployment (clients only, never agents or self-registered clients): its users are not shown the consent page (prompt=consent still shows it); sign-in and agreements still apply.'),
  session_transfer: z
    .boolean()
    .default(false)
    .describe(
      "A session transfer client (docs/browser-sessions.md): it pushes a native app's access token to /par and the browser that opens the request_uri is signed in, then sent to return_to. It never gets a code or a token. Locked down at start: grant_types [authorization_code] only, no redirect_uris, not first_party, not an agent; allowed_return_urls, session_transfer_subject_clients and session_transfer_audiences must be set.",
    ),
  allowed_return_urls: z
    .array(z.url({ protocol: /^https?$/ }))
    .default([])
    .describe('Session transfer clients: the URLs the browser may be sent to after the transfer (exact match, no pattern).'),
  session_transfer_subject_clients: z
    .array(clientRef)
    .default([])
    .describe('Session transfer clients: the clients (the native apps) whose user access tokens they accept as subject_token.'),
  session_transfer_audiences: z
    .array(z.string())
    .default([])
    .describe(
      "Session transfer clients: the audiences (resource ids, or the issuer for userinfo tokens) a subject token may have. A resource server receives the app's tokens for it: list only resources you trust with your users' browser sessions, since a token for one of them can be replayed here.",
    ),
  session_transfer_bind_address: z
    .boolean()
    .default(true)
    .describe("Session transfer clients: the browser must come from the address (IPv6: the /64) that pushed the request (behind trusted_proxies, the forwarded client address). Turn off only for apps whose traffic leaves by another route than the browser's."),
  dpop_bound_access_tokens: z
    .boolean()
    .default(false)
    .describe(`The client always uses DPoP (RFC 9449 §5.2): a token request without a DPoP proof is refused with invalid_request.`),
  sub_profile: entityProfiles
    .optional()
    .describe("The client's entity profile when it acts (act.sub_profile in exchanged tokens, draft-mcguinness-oauth-actor-profile): default ai_agent for agents, service for other clients."),
  workload_identity: clientWorkloadIdentitySchema
    .optional()
    .describe('The client authenticates with a platform JWT (Kubernetes, SPIFFE; SEP-1933) instead of a secret or key (token_endpoint_auth_method becomes workload_identity): the issuer must be listed in workload_identity.issuers; no client_secret_env, jwks or jwks_uri. docs/workload-identity.md.'),
});

export const staticAgentSchema = staticClientSchema.extend({
  agent_type: z.string().default('assistant'),
  owner: z.string().optional().describe('Username of the person responsible for the agent.'),
  grant_types: staticClientSchema.shape.grant_types.default([
    'client_credentials',
    'authorization_code',
    'refresh_token',
    'urn:ietf:params:oauth:grant-type:token-exchange',
    'urn:ietf:params:oauth:grant-type:device_code',
  ]),
  expires_at: z.iso.datetime({ offset: true }).optional().describe('After this time the agent is refused.'),
});

export const authServerConfigSchema = z.strictObject({
  issuer: z.url().default('http://localhost:9000').describe('The issuer URL; every endpoint lives under it.'),
  listen: z
    .strictObject({
      host: z.string().default('localhost').describe('Interface to bind; use 0.0.0.0 behind a proxy.'),
      port: z.number().int().min(0).max(65535).default(9000).describe('TCP port; 0 picks a free one.'),
    })
    .prefault({}),
  data_dir: z.string().default('.mandate').describe('Holds the SQLite file, the signing keys and generated secrets.'),
  storage: z
    .strictObject({
      driver: z.enum(['sqlite', 'postgres']).optional().describe('Defaults to postgres when DATABASE_URL is set, else sqlite.'),
      sqlite_file: z.string().default('mandate.db').describe('Relative to data_dir.'),
      client_cache_seconds: z
        .number()
        .int()
        .min(0)
        .default(5)
        .describe('Seconds a client record is cached in memory. Changes made on this instance apply at once; on other instances at once with REDIS_URL (pub/sub), else within this time. 0 disables.'),
      revocation_channel: z
        .string()
        .min(1)
        .default('mandate:revocations')
        .describe('Redis pub/sub channel (REDIS_URL) on which revocations, grant revocations and client disables are published to every instance and gateway.'),
    })
    .prefault({}),
  tokens: z
    .strictObject({
      access_token_ttl: seconds.default(900).describe('Access token lifetime (15 minutes).'),
      id_token_ttl: seconds.default(3600).describe('ID token lifetime (1 hour).'),
      refresh_token_ttl: seconds.default(1_209_600).describe('Lifetime of a grant and its refresh tokens (14 days from sign-in); rotation does not extend it.'),
      refresh_reuse_grace: z.number().int().min(0).default(10).describe('Seconds in which a rotated refresh token may be presented again (concurrent refreshes) without revoking the grant.'),
      code_ttl: seconds.default(60).describe('Authorization codes live one minute (OAuth 2.1 §4.1.2 recommends at most 10).'),
      interaction_ttl: seconds.default(600).describe('Time to complete login and consent.'),
      session_ttl: seconds.default(28_800).describe('Browser sign-in session (8 hours).'),
      device_code_ttl: seconds.default(600).describe('Time to enter a device grant user code and approve it (RFC 8628).'),
      device_poll_interval: seconds.default(5).describe('Seconds a device must wait between two polls of the token endpoint (RFC 8628 §3.5).'),
    })
    .prefault({}),
  keys: z
    .strictObject({
      publish_before_use: z.number().int().min(0).default(300).describe('Seconds a rotated key is published in the JWKS before it signs, so verifiers can fetch it first.'),
    })
    .prefault({}),
  registration: z
    .strictObject({
      enabled: z.boolean().default(true).describe('Open dynamic client registration (RFC 7591) and agent registration (/aiagent/register).'),
      dynamic_clients: z
        .boolean()
        .default(true)
        .describe('Serve /register (RFC 7591) for any client. With false, only AI agents register themselves, at /aiagent/register (and metadata names no registration_endpoint).'),
      allowed_scopes: z
        .array(z.string())
        .optional()
        .describe(
          'The registration scope allowlist (seed 003): the only resource scopes a self-registered client (/register, /aiagent/register, client ID metadata documents) may hold, with a user or without. Requested scopes outside it are withheld (the registration response says so). Omitted: default deny, no resource scopes (OpenID Connect scopes only).',
        ),
      client_credentials: z
        .boolean()
        .default(false)
        .describe('Whether clients registered through /register or described by a metadata document may use client_credentials (tokens for themselves, without a user). Agents registered through /aiagent/register always may, within allowed_scopes.'),
      token_exchange: z
        .boolean()
        .default(false)
        .describe('Whether clients registered through /register or described by a metadata document may use token exchange (RFC 8693). Agents registered through /aiagent/register always may.'),
      default_resource: z
        .url()
        .optional()
        .describe('Default resource (RFC 8707) of agents registered through /aiagent/register that name none: the audience of their tokens when a request names no resource.'),
      redirect_uri_hosts: z.array(z.string()).optional().describe('Hosts allowed in registered redirect URIs besides loopback; any host when omitted.'),
      rate_limit_per_minute: z.number().int().min(1).default(30).describe('Registrations per minute from one address.'),
      max_clients: z.number().int().min(1).default(10_000).describe('Cap on dynamically registered clients and agents.'),
      unused_client_expiry_days: z.number().int().min(1).default(30).describe('Dynamic clients never used within this many days are deleted.'),
    })
    .prefault({}),
  client_id_metadata_documents: z
    .strictObject({
      enabled: z.boolean().default(true),
      allow_loopback: z.boolean().default(false).describe('Development only: allow documents on loopback addresses, over http.'),
      max_bytes: z.number().int().positive().default(5120),
      timeout_ms: z.number().int().positive().default(3000),
      min_cache_seconds: z.number().int().min(0).default(60),
      max_cache_seconds: z.number().int().positive().default(86_400),
      verified_hosts: z
        .array(verifiedHost)
        .default([])
        .describe(
          'Hosts whose client metadata documents count as verified on the consent page (exact host names, no scheme, port or wildcard): every document on a listed host counts, so list only hosts whose every path you trust. Other documents are shown as unverified, like self-registered clients.',
        ),
      fetches_per_host_per_minute: z.number().int().positive().default(30).describe('Document fetches per host and minute (a failed fetch is also remembered for 60 s): the server is no reflector.'),
    })
    .prefault({}),
  par: z
    .strictObject({
      required: z.boolean().default(false).describe('Every client must use pushed authorization requests (RFC 9126 §5 require_pushed_authorization_requests); /authorize without a request_uri is refused.'),
      request_uri_ttl: z.number().int().min(1).max(600).default(60).describe('Seconds a request_uri from /par stays usable (once). RFC 9126 §2.2 suggests a short lifetime: 5 to 600 seconds.'),
    })
    .prefault({})
    .describe('Pushed authorization requests (RFC 9126) at <issuer>/par.'),
  cors: z
    .strictObject({
      allowed_origins: z.array(z.string()).default([]).describe('Browser origins allowed to call metadata, registration, token, JWKS and revocation endpoints.'),
    })
    .prefault({}),
  trusted_proxies: z
    .array(z.string())
    .default([])
    .describe('Addresses or CIDRs of reverse proxies in front of the server. From a trusted peer, the client address is the rightmost X-Forwarded-For entry that is not itself trusted; with none, the TCP peer is the client.'),
  limits: z
    .strictObject({
      login_per_account: z.number().int().min(1).default(10).describe('Sign-in attempts per account per window, from any address. Nothing is locked for good, but a third party that keeps guessing can keep delaying an account\'s sign-in, window after window (its guesses are audited, and its address is also held to login_per_address).'),
      login_per_address: z.number().int().min(1).default(30).describe('Failed sign-ins per client address (IPv6: per /64) per window, across all accounts.'),
      login_window_seconds: z.number().int().min(1).default(300),
      device_codes_per_address: z.number().int().min(1).default(10).describe('User codes tried at /device per client address (IPv6: per /64) per 5 minutes (RFC 8628 §5.1).'),
      totp_per_account: z
        .number()
        .int()
        .min(1)
        .default(5)
        .describe('One-time codes (TOTP) and passwords tried per account per login window on the account and approval pages (RFC 4226 §7.3: throttle guessing; a 6-digit code with a ±1 step window is guessed once in about 333,000 tries).'),
    })
    .prefault({})
    .describe('Rate limits, shared by every instance through Redis when REDIS_URL is set.'),
  totp: z
    .strictObject({
      key_env: z
        .string()
        .default('MANDATE_TOTP_KEY')
        .describe('Environment variable with the key that encrypts TOTP secrets at rest (at least 32 characters of random data; AES-256-GCM under a key derived from it). Unset: generated on first start into data_dir/secrets/totp.key (mode 0600). Losing it disables every enrolled TOTP (docs/totp.md).'),
      issuer_label: z.string().min(1).max(100).optional().describe('The issuer that authenticator apps show beside the account (otpauth URI); defaults to branding.product_name.'),
    })
    .prefault({})
    .describe('TOTP (RFC 6238), the optional second factor users enrol at /account/security (docs/totp.md).'),
  logout: logoutConfigSchema,
  remember_me: rememberMeSchema.prefault({}).describe('"Keep me signed in", set and used only while the risk is low (docs/browser-sessions.md).'),
  branding: brandingSchema.prefault({}).describe('The look of the sign-in, consent, agreement and device pages.'),
  users: z.array(userSchema).default([]),
  clients: z.array(staticClientSchema).default([]),
  agents: z.array(staticAgentSchema).default([]).describe('AI agents: clients with an agent identity (client credentials, refresh, token exchange).'),
  resources: z.array(resourceSchema).default([]),
  agreements: z.array(agreementSchema).default([]),
  authentication_policies: z.array(authenticationPolicySchema).default([]),
  admin: z
    .strictObject({
      token_env: z.string().default('MANDATE_ADMIN_TOKEN').describe('Environment variable with the static admin token; generated into data_dir/secrets/admin.token when unset. It has one use only: creating the first admin (POST /admin/api/v1/bootstrap); the rest of the admin API takes the access tokens of signed-in admins.'),
      bootstrap_token: z
        .boolean()
        .default(true)
        .describe('Whether the static admin token is accepted at all. With false, admins come from users[].roles only, and /admin/api/v1/bootstrap answers 404.'),
      mcp: z
        .strictObject({
          enabled: z.boolean().default(true).describe('Whether the admin MCP server answers at <issuer>/admin/mcp (docs/admin-mcp.md); with false it answers 404.'),
          writes: z
            .boolean()
            .default(false)
            .describe('Whether the admin MCP server offers write tools (create, update, delete, revoke, rotate). Off by default: read tools only. Even on, a write tool is listed and callable only with a token carrying a write scope for its area.'),
          production: z
            .boolean()
            .default(false)
            .describe('Marks this deployment as production: the admin MCP server refuses every write tool whatever admin.mcp.writes says (the admin API and the console are not affected).'),
          self_registered_clients: z
            .boolean()
            .default(false)
            .describe(
              'Whether clients that registered themselves (RFC 7591, client ID metadata documents: how MCP clients arrive) may ask for admin scopes, outside registration.allowed_scopes. They get them only through a signed-in user, narrowed to that user\'s roles, and write scopes only when the user ticks them on the consent page. With false, only clients of the configuration file or the admin API can obtain admin tokens.',
            ),
        })
        .prefault({})
        .describe('The admin MCP server (docs/admin-mcp.md).'),
      delegation: z
        .strictObject({
          actors: z
            .array(z.string().min(1))
            .default([])
            .describe(
              "Agents (client ids) that may act for an administrator: exchange an admin's own token for the admin resource (RFC 8693) for one that carries act naming the agent, with the same or fewer scopes. Their calls are audited as the admin with the act chain. Empty (the default): no one acts for an admin; tokens for the admin resource come only from an admin's own sign-in.",
            ),
        })
        .prefault({})
        .describe('Agents acting for administrators (docs/admin.md#agents-acting-for-an-admin).'),
    })
    .prefault({}),
  dpop: dpopConfigSchema,
  trusted_idps: trustedIdpsSchema,
  id_jag: idJagSchema,
  workload_identity: workloadIdentitySchema,
  request_limits: z
    .strictObject({
      max_body_bytes: z.number().int().positive().default(64 * 1024).describe('Largest request body on any endpoint; larger → 413 invalid_request.'),
      max_json_depth: z
        .number()
        .int()
        .min(2)
        .max(1000)
        .default(32)
        .describe('Deepest nesting of arrays and objects in a JSON body (registration, admin API); deeper → 400 invalid_client_metadata / invalid_request.'),
    })
    .prefault({})
    .describe('Limits on request bodies.'),
}).superRefine((config, context) => {
  // Our own assertions are never trusted back (ID-JAG §8.3), nor issued to ourselves.
  config.trusted_idps.forEach((idp, i) => {
    if (sameIssuer(idp.issuer, config.issuer)) context.addIssue({ code: 'custom', path: ['trusted_idps', i, 'issuer'], message: 'a trusted IdP cannot be this server itself (its issuer)' });
    if (idp.link.claims.includes('email') && idp.link.email_domains === undefined) {
      context.addIssue({ code: 'custom', path: ['trusted_idps', i, 'link', 'email_domains'], message: "link.claims lists 'email': name the IdP's email domains (link.email_domains)" });
    }
  });
  config.id_jag.audiences.forEach((entry, i) => {
    if (sameIssuer(entry.audience, config.issuer)) context.addIssue({ code: 'custom', path: ['id_jag', 'audiences', i, 'audience'], message: 'an ID-JAG audience cannot be this server itself (its issuer)' });
  });
  const platformIssuers = new Set(config.workload_identity.issuers.map((i) => i.issuer));
  const claimed = new Map<string, string>();
  for (const key of ['clients', 'agents'] as const) {
    config[key].forEach((client, i) => {
      const workload = client.workload_identity;
      if (!workload) return;
      const at = (field: string) => [key, i, field];
      if (!platformIssuers.has(workload.issuer)) {
        context.addIssue({ code: 'custom', path: [...at('workload_identity'), 'issuer'], message: `${client.client_id}: workload issuer ${workload.issuer} is not listed in workload_identity.issuers` });
      }
      for (const field of ['client_secret_env', 'jwks', 'jwks_uri'] as const) {
        if (client[field] !== undefined) context.addIssue({ code: 'custom', path: at(field), message: `${client.client_id}: a client with workload_identity has no ${field} (it authenticates with its platform JWT)` });
      }
      const identity = JSON.stringify([workload.issuer, workload.subject]);
      const other = claimed.get(identity);
      if (other !== undefined) context.addIssue({ code: 'custom', path: [...at('workload_identity'), 'subject'], message: `${client.client_id}: workload identity ${workload.subject} of ${workload.issuer} is already ${other}'s` });
      else claimed.set(identity, client.client_id);
    });
  }
});

/** Issuer identifiers compared as RFC 8414 does (exact string), ignoring one trailing slash. */
function sameIssuer(a: string, b: string): boolean {
  return a.replace(/\/$/, '') === b.replace(/\/$/, '');
}

export type AuthServerConfig = z.output<typeof authServerConfigSchema>;
export type AuthServerConfigInput = z.input<typeof authServerConfigSchema>;
export type ResourceConfig = z.output<typeof resourceSchema>;
export type UserConfig = z.output<typeof userSchema>;
export type StaticClientConfig = z.output<typeof staticClientSchema>;
export type StaticAgentConfig = z.output<typeof staticAgentSchema>;
export type DpopConfig = z.output<typeof authServerConfigSchema>['dpop'];
export type TrustedIdpConfig = z.output<typeof authServerConfigSchema>['trusted_idps'][number];
export type IdJagConfig = z.output<typeof authServerConfigSchema>['id_jag'];
export type WorkloadIdentityConfig = z.output<typeof authServerConfigSchema>['workload_identity'];
export type ClientWorkloadIdentity = z.output<typeof clientWorkloadIdentitySchema>;
export type BrandingConfig = z.output<typeof brandingSchema>;
export type AgreementConfig = z.output<typeof agreementSchema>;
export type AuthenticationPolicyConfig = z.output<typeof authenticationPolicySchema>;
