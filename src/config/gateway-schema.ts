import { z } from 'zod';
import { webRouteSchema } from './gateway-web-schema.ts';

/**
 * The MCP security gateway's configuration (`mandate serve gateway --config <file>`): a route
 * table, each route with its own filter settings. Strict like the authorization server's file;
 * `schema/gateway.schema.json` and docs/configuration.md are generated from it.
 */

const milliseconds = z.number().int().positive();
const scopeToken = z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, 'a scope token (RFC 6749 §3.3)');
const origin = z.string().refine((value) => {
  try {
    return new URL(value).origin === value;
  } catch {
    return false;
  }
}, 'an origin: scheme://host[:port], no path');

const listenSchema = (port: number) =>
  z
    .strictObject({
      host: z.string().default('localhost').describe('Interface to bind; use 0.0.0.0 behind a load balancer.'),
      port: z.number().int().min(0).max(65535).default(port).describe('TCP port; 0 picks a free one.'),
    })
    .prefault({});

export const RATE_LIMIT_KEYS = ['route', 'tool', 'client', 'subject', 'actor'] as const;

const rateLimitSchema = z.strictObject({
  name: z.string().min(1).describe('Shown in metrics and in the audit reason.'),
  key: z.array(z.enum(RATE_LIMIT_KEYS)).min(1).describe('What the bucket is keyed by: any of route, tool, client, subject, actor (the most recent actor of the act chain).'),
  limit: z.number().int().positive().describe('Requests allowed per window.'),
  window_seconds: z.number().int().positive().default(60),
  methods: z
    .array(z.string())
    .optional()
    .describe('MCP methods counted. Default: every request except protocol traffic (initialize, ping, notifications/*, responses).'),
  tools: z.array(z.string()).optional().describe('Count only calls of these tools.'),
});

/** Issue 14: the longest approval lifetime an authorization server grants (its `lifetime_seconds` max). */
export const MAX_APPROVAL_LIFETIME_SECONDS = 900;

const approvalSchema = z.union([
  z.literal('required').describe('Every call of the tool needs the user\'s approval (the defaults below).'),
  z.strictObject({
    when: z
      .string()
      .default('true')
      .describe('CEL expression over the same variables as `allow`; the call needs approval when it is true, or when it fails or gives anything but a boolean (fail closed). E.g. `args.amount > 100`. With `binds`, it may read only bound arguments, as `args.X` or `args["X"]`.'),
    lifetime_seconds: z
      .number()
      .int()
      .min(10)
      .max(MAX_APPROVAL_LIFETIME_SECONDS)
      .default(300)
      .describe('How long the user has to approve, and the approved call to be retried (the transaction lifetime at the AS).'),
    binds: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe('The arguments the approval binds (hashed and shown to the user). Default: all of them. Unbound arguments may differ in the retried call.'),
    summary: z
      .string()
      .min(1)
      .max(200)
      .optional()
      .describe('What the approval page says, with `{arg}` placeholders replaced by the call\'s arguments, e.g. "Transfer {amount} EUR to {to}". Hidden characters (controls, format, bidi) in values are shown as \\u{…}; values are cut to 80 characters, the whole to 200. With `binds`, a placeholder must name a bound argument. Default: "Call <tool> with <bound arguments>".'),
  }),
]);

/** A `{name}` placeholder of an approval summary (src/gateway/approvals.ts fills them in). */
export const SUMMARY_PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_-]*)\}/g;
/** `args` in a CEL expression, and the argument it reads when written `args.X`, `args["X"]` or `args['X']`. */
const ARGS_ACCESS = /(?<![\w.])args\b(?:\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)|\s*\[\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\])?/g;

/**
 * What an approval with `binds` shows or decides on without binding it: the person approves the
 * summary, and the retry must be the call they read about. A `{placeholder}` or a `when` that reads
 * an unbound argument would let the retry change it (another currency, same hash); a `when` that
 * reads `args` other than by a fixed name cannot be checked, and is refused too.
 */
function unboundReferences(approval: { when: string; binds?: string[]; summary?: string }): { key: 'summary' | 'when'; message: string }[] {
  const bound = new Set(approval.binds);
  const problems: { key: 'summary' | 'when'; message: string }[] = [];
  for (const [, name] of (approval.summary ?? '').matchAll(SUMMARY_PLACEHOLDER)) {
    if (!bound.has(name!)) problems.push({ key: 'summary', message: `the summary shows {${name}}, an argument the approval does not bind: add ${name} to binds, or take it out of the summary` });
  }
  for (const [, dotted, double, single] of approval.when.matchAll(ARGS_ACCESS)) {
    const name = dotted ?? double ?? single;
    if (name === undefined) problems.push({ key: 'when', message: 'when reads args other than as args.X or args["X"]: with binds, only bound arguments may decide whether approval is needed' });
    else if (!bound.has(name)) problems.push({ key: 'when', message: `when reads args.${name}, an argument the approval does not bind: add ${name} to binds, or take it out of when` });
  }
  return problems;
}

const toolRuleSchema = z.strictObject({
  scopes: z.array(scopeToken).default([]).describe('Scopes the token needs to call the tool; missing ones → 403 insufficient_scope naming them.'),
  allow: z
    .string()
    .optional()
    .describe('CEL expression that must be true to call the tool, over claims, sub, client_id, scopes, act (the actor chain as a list, most recent first), tool, args, method, route.'),
  reason: z.string().optional().describe('Written to the audit log when `allow` refuses.'),
  approval: approvalSchema
    .optional()
    .describe("High-risk tool (issue 14): a call allowed by `scopes` and `allow` also needs the user's approval of that exact call, out of band at the authorization server. The route needs `approvals`. docs/gateway.md, \"Approvals\"."),
});

const ALGORITHMS = ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'] as const;

/** How one issuer's tokens are checked: shared by `token` (one issuer) and each `issuers` entry. */
const validationFields = {
  mode: z.enum(['jwt', 'introspection']).default('jwt').describe('jwt: verified locally against the AS keys (no call per request). introspection: RFC 7662 at the AS, cached.'),
  jwks_uri: z.url().optional().describe('Defaults to the jwks_uri of the issuer metadata (RFC 8414).'),
  algorithms: z
    .array(z.enum(ALGORITHMS))
    .default(['ES256', 'RS256', 'PS256', 'EdDSA'])
    .describe('Signature algorithms accepted; `none` and HMAC never are.'),
  typ: z.string().nullable().default('at+jwt').describe('Required JWT `typ` header (RFC 9068); null accepts any.'),
  clock_skew_seconds: z.number().int().min(0).max(300).default(5),
  jwks_refresh_seconds: z.number().int().positive().default(300).describe('Keys are refetched this often, and on an unknown `kid`; the cached set keeps serving while the AS is unreachable.'),
  jwks_min_refresh_seconds: z.number().int().min(0).default(10).describe('Least time between two fetches caused by unknown kids, so made-up kids cannot make the gateway hammer the AS.'),
  cache_entries: z.number().int().positive().default(10_000).describe('Verified tokens remembered until they expire.'),
  revocation_list: z
    .strictObject({
      endpoint: z.url().optional().describe('Defaults to <issuer>/revocations (Mandate authorization servers).'),
      client_id: z.string().min(1),
      client_secret_env: z.string().min(1),
      poll_seconds: z.number().int().positive().default(10).describe('Without REDIS_URL, the revocation window; with it, the fallback that catches up on missed messages.'),
      channel: z
        .string()
        .min(1)
        .default('mandate:revocations')
        .describe("With REDIS_URL: the AS's storage.revocation_channel; revocations pushed on it apply at once (well under a second)."),
    })
    .optional()
    .describe(
      'jwt mode, Mandate authorization servers: the revocation feed, so revoked tokens, tokens of revoked grants and of disabled or expired clients and actors stop working (pushed over Redis pub/sub when REDIS_URL is set, else within poll_seconds). Requests get 503 temporarily_unavailable until the first list is loaded. The client must be a resource server of the route resource at the AS (resources[].resource_servers).',
    ),
  introspection: z
    .strictObject({
      endpoint: z.url().optional().describe('Defaults to the introspection_endpoint of the issuer metadata.'),
      client_id: z.string().min(1),
      client_secret_env: z.string().min(1).describe('Environment variable holding the client secret.'),
      cache_seconds: z.number().int().min(0).default(30).describe('How long an active answer is reused (never past the token `exp`).'),
      negative_cache_seconds: z.number().int().min(0).default(5).describe('How long an inactive answer is reused.'),
    })
    .optional(),
};

const tokenSchema = z
  .strictObject({
    issuer: z.url().optional().describe('Expected `iss`; defaults to the first authorization server.'),
    ...validationFields,
  })
  .prefault({});

/** The `token` block as it is when the file leaves it out: what a route with `issuers` must have. */
const TOKEN_DEFAULTS = JSON.stringify(tokenSchema.parse(undefined));

/**
 * One trusted issuer of a route with several (docs/gateway.md "Several authorization servers"):
 * the token's `iss` chooses the entry, before any key fetch or introspection call.
 */
const issuerSchema = z.strictObject({
  issuer: z.url().describe('The `iss` of its tokens (exact match), and the authorization server listed in the protected resource metadata.'),
  audience: z.url().optional().describe("The `aud` its tokens must carry. Default: the route's resource."),
  ...validationFields,
  token_prefix: z
    .string()
    .min(1)
    .optional()
    .describe('introspection mode, opaque tokens: the prefix of this issuer\'s tokens (e.g. `mat_`). A route with several introspection issuers needs one on all of them but at most one, which takes the opaque tokens no prefix claims: an opaque token is sent to one introspection endpoint only.'),
  subject_prefix: z
    .string()
    .optional()
    .describe('Put before the token `sub`, `client_id` and `act` identities (audit, rules, rate limits, session bindings, X-Mandate-* headers), so that two issuers\' users, clients and agents never share one. Default on a route with several issuers: "<issuer>#"; "" keeps the `sub` as it is. A route with one issuer never prefixes.'),
});

const mediationSchema = z.strictObject({
  token_endpoint: z.url().optional().describe('Defaults to the token_endpoint of the issuer metadata.'),
  client_id: z.string().min(1).describe("The gateway's own client at the AS: the actor of the exchange."),
  client_secret_env: z.string().min(1),
  resource: z.url().describe('The audience of the exchanged token: the upstream.'),
  issuer: z
    .url()
    .optional()
    .describe("The authorization server the gateway exchanges at. Default: the route's first issuer. With several issuers, a token of another issuer is refused (403, rejection mediation_issuer): it is never sent to an AS that did not issue it."),
  scope: z.string().optional().describe('Scope to ask for; defaults to the incoming token scope.'),
  dpop: z
    .boolean()
    .default(false)
    .describe("Bind the exchanged upstream token to the gateway's own DPoP key (RFC 9449; <data_dir>/gateway-dpop-key.json, shared through Redis) and send it to the upstream with a proof. The Node gateway only for now (docs/dpop.md)."),
});

/** DPoP at a route (RFC 9449 §7): off by default, so Bearer traffic is unchanged. */
const routeDpopSchema = z.strictObject({
  mode: z
    .enum(['off', 'allow', 'require'])
    .default('off')
    .describe('off: Bearer only (a DPoP-bound token sent as Bearer is still refused); allow: Bearer and DPoP; require: DPoP-bound tokens only.'),
  algorithms: z
    .array(z.enum(['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'EdDSA']))
    .min(1)
    .default(['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA'])
    .describe('Proof algorithms accepted (the algs of the DPoP challenge).'),
  proof_max_age_seconds: z.number().int().min(1).max(3600).default(300).describe('Largest |now − iat| of a proof (RFC 9449 §11.1).'),
  require_nonce: z.boolean().default(false).describe('Answer 401 use_dpop_nonce with a DPoP-Nonce until a proof carries a fresh nonce (RFC 9449 §9).'),
  replay: z.boolean().default(true).describe('Refuse a proof jti seen before within the window (in memory; shared through Redis when REDIS_URL is set).'),
  content_digest: z
    .enum(['ignore', 'verify', 'require'])
    .default('verify')
    .describe('The proof content_digest claim of the MCP DPoP profile (SEP-1932): ignore it, verify it when present, or require it.'),
});

const approvalsSchema = z.strictObject({
  client_id: z.string().min(1).describe("The gateway's client at the AS, allowed to create transactions there (`transactions: allowed`)."),
  client_secret_env: z.string().min(1).describe('Environment variable holding its secret (client_secret_basic). It also keys the MAC of the 2026-07-28 requestState.'),
  retry_check: z
    .boolean()
    .default(false)
    .describe('Let a retried call through when the AS says its transaction was approved (POST <issuer>/transactions/{id}/use), for clients that know nothing of approvals. Off: a retried call starts a new transaction.'),
});

/** A reviewed tool snapshot inline (`tool_pins.snapshot` as an object): what `mandate gateway pin` writes. */
const toolSnapshotSchema = z.strictObject({
  resource: z.string().min(1).describe('The route\'s resource: a snapshot of another one is refused.'),
  tools: z
    .array(
      z.strictObject({
        name: z.string().min(1).max(200).describe('The tool\'s name as the gateway lists it (`<upstream><separator><tool>` on a route with upstreams).'),
        hash: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'base64url(SHA-256), 43 characters').describe('The hash of its reviewed definition (src/core/tool-hash.ts).'),
        definition: z.record(z.string(), z.unknown()).optional().describe('The reviewed definition, for the reader: only the hash is used.'),
      }),
    )
    .max(10_000)
    .describe('The reviewed tools.'),
});

/**
 * Tool pinning (issue 18, docs/gateway.md "Tool pinning"). Off unless the block is there: pinning
 * needs the gateway's client at the AS (which owns the pins, so every instance agrees), as
 * approvals do, and existing routes have none. With the block, the defaults are the secure ones:
 * on, changed and new tools hidden until an admin approves them, first sight trusted.
 */
const toolPinsSchema = z.strictObject({
  mode: z.enum(['off', 'on']).default('on').describe('on (the default with this block): every tools/list answer is checked against the pins at the AS; off: not at all.'),
  on_change: z
    .enum(['hide', 'refuse', 'allow_and_audit'])
    .default('hide')
    .describe('A tool whose definition is not the approved one (changed, or new on a pinned route): hide (default) removes it from tools/list and refuses its calls; refuse lists it but refuses its calls; allow_and_audit lets it through and audits it. Always audited and counted.'),
  first_use: z
    .enum(['pin', 'pending'])
    .default('pin')
    .describe('A route with no pins yet: pin (default) trusts its first tools/list (recorded as approved, audited tool_pin.recorded); pending holds every tool for approval.'),
  snapshot: z
    .union([z.string().min(1), toolSnapshotSchema])
    .optional()
    .describe(
      'A snapshot written by `mandate gateway pin`, reviewed: a tool with no pin yet is pinned to its hash there instead of trusted on first use (listed with another hash: changed; absent: new). A file path (relative to this file; the Node gateway, read again on each reload), or the file\'s content inline (an object; the only form on the Workers gateway, which has no file system).',
    ),
  client_id: z.string().min(1).describe("The gateway's client at the AS, allowed to use /tool-pins there (`tool_pins: allowed`); may be the approvals client."),
  client_secret_env: z.string().min(1).describe('Environment variable holding its secret (client_secret_basic).'),
  cache_seconds: z.number().int().min(0).max(3600).default(300).describe('How long an approved verdict is reused per tool and definition hash (no AS call in steady state).'),
  negative_cache_seconds: z
    .number()
    .int()
    .min(0)
    .max(3600)
    .default(5)
    .describe('How long a changed or new verdict is reused; an approval shows within this time (0: ask every time).'),
});

const upstreamSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits and -, not first')
    .max(32)
    .describe('Prefix of its tools and prompts (`<name><separator><tool>`) and `upstream` in the audit.'),
  url: z.url().describe('The MCP server (Streamable HTTP endpoint, e.g. http://localhost:8000/mcp).'),
});

export const routeSchema = z.strictObject({
  kind: z.literal('mcp').default('mcp').describe('mcp (the default): the route fronts an MCP server and takes bearer tokens. web: see the web route keys.'),
  path: z.string().regex(/^\/[^?#]*$/, 'a path starting with /').describe('Path prefix the route serves, e.g. /mcp.'),
  upstream: z.url().optional().describe('The MCP server the route fronts (or `upstreams`: exactly one of the two).'),
  upstreams: z
    .array(upstreamSchema)
    .min(1)
    .optional()
    .describe('Several MCP servers behind the route (docs/gateway.md "Several MCP servers behind one route"): the gateway answers initialize itself and lists their tools, prompts and resources with names prefixed `<name><separator>`. Instead of `upstream`.'),
  separator: z
    .string()
    .regex(/^[_.~-]{1,4}$/, 'one to four of _ . ~ -')
    .default('__')
    .describe('Between the upstream name and the tool or prompt name with `upstreams` (`bank__read_balance`).'),
  rewrite: z.string().regex(/^\/[^?#]*$/).optional().describe('Replaces the path prefix before forwarding (seed 001: /mcp → /). Default: the upstream URL path + the rest of the request path.'),
  resource: z.url().describe('The protected resource identifier (RFC 9728): the `aud` tokens must carry.'),
  resource_name: z.string().optional().describe('Human-readable name in the protected resource metadata.'),
  authorization_servers: z
    .array(z.url())
    .min(1)
    .optional()
    .describe('Issuers clients may get tokens from (published in the metadata, first preferred). Without `issuers`: required, and the first one (or token.issuer) is the one issuer whose tokens are accepted. With `issuers`: optional, it defaults to their list; given, it must name the same issuers, and its order is the one published.'),
  issuers: z
    .array(issuerSchema)
    .min(1)
    .optional()
    .describe('Several trusted authorization servers (docs/gateway.md "Several authorization servers"), each with its audience and validation mode, in order of preference; replaces `token`. The token `iss` chooses the entry; a token of any other issuer is refused (401 invalid_token) before any key fetch or introspection call.'),
  scopes: z.array(scopeToken).default([]).describe('Scopes every request on the route needs.'),
  token: tokenSchema.describe('How access tokens are validated, for a route with one issuer (with `issuers`, set these per issuer instead).'),
  tools: z.record(z.string(), toolRuleSchema).default({}).describe('Per-tool rules, by tool name.'),
  unlisted_tools: z
    .enum(['allow', 'deny'])
    .default('deny')
    .describe('Whether tools without an entry in `tools` may be called (and listed). Default deny: list every tool the route offers.'),
  rules: z
    .array(z.strictObject({ allow: z.string(), reason: z.string().optional() }))
    .default([])
    .describe('CEL rules every request must pass (claim → path rules, seed 004); also sees path and http_method.'),
  rate_limits: z.array(rateLimitSchema).default([]),
  allowed_origins: z.array(origin).default([]).describe('Browser origins allowed to call; a request with any other Origin gets 403.'),
  max_body_bytes: z.number().int().positive().default(1_048_576).describe('Largest POST body; larger → 413.'),
  max_json_depth: z
    .number()
    .int()
    .min(2)
    .max(1000)
    .default(64)
    .describe('Deepest nesting of arrays and objects in a message (the message is level 1); deeper → 400, JSON-RPC -32600.'),
  protocol_versions: z.array(z.string()).optional().describe('MCP-Protocol-Version values accepted; default 2025-03-26, 2025-06-18, 2025-11-25 and 2026-07-28.'),
  identity_headers: z
    .boolean()
    .default(false)
    .describe('Tell the upstream who is calling: X-Mandate-Sub, X-Mandate-Client-Id, X-Mandate-Scope and X-Mandate-Act (the chain as JSON). Such headers from callers are always removed. For upstreams with no auth of their own that keep per-user state behind the gateway only.'),
  approvals: approvalsSchema
    .optional()
    .describe('How the gateway asks for approvals of the tools that need one (`tools.<name>.approval`): its client at the route\'s first issuer (token.issuer, else the first of issuers or authorization_servers), whose /transactions endpoints it calls. Required when a tool needs approval.'),
  dpop: routeDpopSchema.prefault({}).describe('DPoP-bound access tokens at this route (RFC 9449 §7; docs/dpop.md).'),
  actor_profile: z
    .strictObject({
      required: z.boolean().default(false).describe('Refuse a delegated token whose act entries lack iss (401 invalid_token).'),
      authorization_required: z.boolean().default(false).describe('Published as actor_authorization_required in the protected resource metadata.'),
    })
    .prefault({})
    .describe('The actor profile (draft-mcguinness-oauth-actor-profile) of delegated tokens (docs/delegation.md, "Actor profile").'),
  tool_pins: toolPinsSchema
    .optional()
    .describe('Tool pinning against silent changes of tool definitions (rug pulls): docs/gateway.md, "Tool pinning". Off without this block.'),
  mediation: mediationSchema.optional().describe("Exchange the caller's token (RFC 8693, the gateway as actor) for one audienced to the upstream. Without it the upstream gets no Authorization header."),
  timeouts: z
    .strictObject({
      connect_ms: milliseconds.default(5_000),
      response_ms: milliseconds.default(30_000).describe('Until the upstream answers with headers (504 after).'),
      idle_ms: milliseconds.default(300_000).describe('Longest silence in a streamed (SSE) response.'),
    })
    .prefault({}),
}).superRefine((route, context) => {
  checkIssuers(route, context);
  if ((route.upstream === undefined) === (route.upstreams === undefined)) {
    context.addIssue({ code: 'custom', path: ['upstream'], message: 'a route needs exactly one of upstream (one MCP server) and upstreams (several)' });
  }
  if (route.upstreams) {
    const seen = new Set<string>();
    for (const [i, upstream] of route.upstreams.entries()) {
      if (seen.has(upstream.name)) context.addIssue({ code: 'custom', path: ['upstreams', i, 'name'], message: `upstream name ${upstream.name} is used twice` });
      seen.add(upstream.name);
      for (const other of route.upstreams) {
        // bank + separator + x__y would read as upstream "bank__x" too: no name may start another's prefix.
        if (other !== upstream && other.name.startsWith(`${upstream.name}${route.separator}`)) {
          context.addIssue({ code: 'custom', path: ['upstreams', i, 'name'], message: `upstream names ${upstream.name} and ${other.name} collide: ${other.name} starts with ${upstream.name}${route.separator}` });
        }
      }
    }
    if (route.upstreams.some((upstream) => upstream.name.includes(route.separator))) {
      context.addIssue({ code: 'custom', path: ['separator'], message: `the separator ${route.separator} may not appear in an upstream name` });
    }
    for (const name of Object.keys(route.tools)) {
      const cut = name.indexOf(route.separator);
      if (cut <= 0 || !seen.has(name.slice(0, cut))) {
        context.addIssue({ code: 'custom', path: ['tools', name], message: `tool ${name} names no upstream: with upstreams, tools are named <upstream>${route.separator}<tool> (${[...seen].map((n) => `${n}${route.separator}…`).join(', ')})` });
      }
    }
    if (route.mediation) context.addIssue({ code: 'custom', path: ['mediation'], message: 'token mediation is for one upstream: not available with upstreams' });
    if (route.rewrite !== undefined) context.addIssue({ code: 'custom', path: ['rewrite'], message: 'rewrite is for one upstream: with upstreams, each URL is used as it is' });
  }
  for (const [name, tool] of Object.entries(route.tools)) {
    if (typeof tool.approval !== 'object' || !tool.approval.binds) continue;
    for (const problem of unboundReferences(tool.approval)) {
      context.addIssue({ code: 'custom', path: ['tools', name, 'approval', problem.key], message: `tool ${name}: ${problem.message}` });
    }
  }
  // A tool that needs approval on a route that cannot ask for one would be refused forever, or — worse,
  // if the check were skipped — let through: refuse the file instead.
  if (route.approvals) return;
  for (const [name, tool] of Object.entries(route.tools)) {
    if (tool.approval === undefined) continue;
    context.addIssue({
      code: 'custom',
      path: ['approvals'],
      message: `tool ${name} needs approval (tools.${name}.approval) but the route has no approvals block: add approvals.client_id and approvals.client_secret_env (the gateway's client at the authorization server)`,
    });
  }
});

type IssuerInput = z.output<typeof issuerSchema>;

/**
 * The rules that tie `issuers`, `authorization_servers`, `token` and `mediation.issuer` together
 * (docs/gateway.md "Several authorization servers"). Each refusal names the fix.
 */
function checkIssuers(
  route: { issuers?: IssuerInput[]; authorization_servers?: string[]; token: unknown; mediation?: { issuer?: string } },
  context: z.RefinementCtx,
): void {
  const issue = (path: (string | number)[], message: string) => context.addIssue({ code: 'custom', path, message });
  if (!route.issuers) {
    if (!route.authorization_servers) issue(['authorization_servers'], 'a route needs authorization_servers (one issuer, validated as `token` says) or issuers (several)');
    const trusted = route.authorization_servers?.[0];
    const issuer = (route.token as { issuer?: string }).issuer ?? trusted;
    if (route.mediation?.issuer !== undefined && route.mediation.issuer !== issuer) issue(['mediation', 'issuer'], `mediation.issuer must be the route's issuer (${issuer})`);
    return;
  }
  if (JSON.stringify(route.token) !== TOKEN_DEFAULTS) issue(['token'], 'a route with issuers sets token validation per issuer: move these token keys into the issuers entries');
  const names = route.issuers.map((entry) => entry.issuer);
  names.forEach((name, i) => {
    if (names.indexOf(name) !== i) issue(['issuers', i, 'issuer'], `issuer ${name} is listed twice`);
  });
  if (route.authorization_servers) {
    const listed = new Set(route.authorization_servers);
    if (listed.size !== route.authorization_servers.length || listed.size !== new Set(names).size || names.some((name) => !listed.has(name))) {
      issue(['authorization_servers'], 'with issuers, authorization_servers must list the same issuers (in the order to publish), or be left out');
    }
  }
  if (route.mediation?.issuer !== undefined && !names.includes(route.mediation.issuer)) issue(['mediation', 'issuer'], `mediation.issuer ${route.mediation.issuer} is not one of the route's issuers`);
  const catchAll: number[] = [];
  const prefixes: { prefix: string; index: number }[] = [];
  const subjects = new Map<string, number>();
  route.issuers.forEach((entry, i) => {
    if (entry.mode === 'introspection') {
      if (!entry.introspection) issue(['issuers', i, 'introspection'], 'mode introspection needs introspection (client_id, client_secret_env)');
      if (entry.revocation_list) issue(['issuers', i, 'revocation_list'], 'revocation_list is for jwt mode: introspection already tells revoked tokens');
      if (entry.token_prefix === undefined) catchAll.push(i);
      else prefixes.push({ prefix: entry.token_prefix, index: i });
    } else if (entry.token_prefix !== undefined) {
      issue(['issuers', i, 'token_prefix'], 'token_prefix is for introspection mode (opaque tokens); JWTs are chosen by their iss');
    }
    const subject = entry.subject_prefix ?? (route.issuers!.length > 1 ? `${entry.issuer}#` : '');
    const other = subjects.get(subject);
    if (other !== undefined) issue(['issuers', i, 'subject_prefix'], `issuers ${other} and ${i} have the same subject_prefix ${JSON.stringify(subject)}: their users would share subjects`);
    subjects.set(subject, i);
  });
  // An opaque token goes to one introspection endpoint only: sending it to another AS would hand
  // that AS a token it did not issue (and could replay).
  if (catchAll.length > 1) issue(['issuers', catchAll[1]!, 'token_prefix'], `issuers ${catchAll.join(', ')} introspect opaque tokens without token_prefix: give all of them but one a token_prefix, so that each opaque token goes to one authorization server only`);
  for (const a of prefixes) {
    for (const b of prefixes) {
      if (a.index < b.index && (a.prefix.startsWith(b.prefix) || b.prefix.startsWith(a.prefix))) issue(['issuers', b.index, 'token_prefix'], `token_prefix ${JSON.stringify(b.prefix)} overlaps issuers[${a.index}]'s ${JSON.stringify(a.prefix)}: a token would match both`);
    }
  }
}

/** One trusted issuer of a route, its defaults resolved (what the route compiler builds a validator from). */
export type IssuerConfig = Omit<IssuerInput, 'audience' | 'subject_prefix'> & { audience: string; subject_prefix: string };

/**
 * The route's trusted issuers in order of preference: `issuers`, or the single-issuer form
 * (`token` with `token.issuer` or the first authorization server) as a list of one.
 */
export function routeIssuers(route: RouteConfig): IssuerConfig[] {
  if (route.issuers) {
    const several = route.issuers.length > 1;
    return route.issuers.map((entry) => ({ ...entry, audience: entry.audience ?? route.resource, subject_prefix: entry.subject_prefix ?? (several ? `${entry.issuer}#` : '') }));
  }
  const { issuer, ...validation } = route.token;
  return [{ ...validation, issuer: issuer ?? route.authorization_servers![0]!, audience: route.resource, subject_prefix: '' }];
}

/** The authorization servers the protected resource metadata lists (RFC 9728 §2), first preferred. */
export function routeAuthorizationServers(route: RouteConfig): string[] {
  return route.authorization_servers ?? route.issuers!.map((entry) => entry.issuer);
}

export { webRouteSchema };

export const gatewayConfigSchema = z.strictObject({
  listen: listenSchema(8080).describe('Where MCP clients connect.'),
  admin: z
    .strictObject({ listen: listenSchema(9464).describe('Serves /metrics (Prometheus) and /healthz; keep it private.') })
    .prefault({})
    .describe('The admin listener, separate from the MCP one.'),
  audit: z
    .strictObject({
      file: z.string().nullable().default('.mandate/gateway-audit.jsonl').describe('JSONL audit file; null for none.'),
      max_bytes: z.number().int().positive().default(50 * 1024 * 1024).describe('Rotate the file at this size.'),
      keep: z.number().int().min(1).default(5).describe('Rotated files kept (.1 is the newest).'),
      stdout: z.boolean().default(false).describe('Also write each event to stdout.'),
      buffer_events: z.number().int().positive().default(10_000).describe('Events buffered before requests wait for the writer (backpressure).'),
    })
    .prefault({})
    .describe('One event per MCP message (docs/gateway.md lists the fields).'),
  data_dir: z
    .string()
    .optional()
    .describe('Where the gateway keeps state across restarts: the last good signing keys of each authorization server (public keys only, signing-keys.json), so valid tokens keep working when it restarts while the AS is down. Unset: kept in memory only (still across route reloads).'),
  rate_limit_prefix: z.string().min(1).default('mandate:gw').describe('Prefix of the gateway keys in Redis: gateways with the same prefix share rate-limit budgets, MCP session bindings and calls held for approval (read at start).'),
  session_idle_seconds: z.number().int().positive().default(86_400).describe('An MCP session (Mcp-Session-Id) unused for this long is forgotten; its id is then refused with 404 and the client starts a new session. With REDIS_URL, the TTL of the shared binding. Read at start.'),
  dpop_nonce_key_env: z
    .string()
    .min(1)
    .default('MANDATE_GATEWAY_DPOP_NONCE_KEY')
    .describe("Environment variable with the key (at least 32 characters) of the gateway's stateless DPoP nonces (routes with dpop.require_nonce); gateways behind one address must share it. Unset: a random key per process (one instance only)."),
  routes: z
    .array(z.discriminatedUnion('kind', [routeSchema, webRouteSchema]))
    .min(1)
    .describe('Each route fronts one MCP server (`kind: mcp`, the default) or one web app (`kind: web`, docs/browser-sessions.md); reloaded when the file changes.'),
});

export type GatewayConfig = z.output<typeof gatewayConfigSchema>;
export type GatewayConfigInput = z.input<typeof gatewayConfigSchema>;
/** An MCP route (`kind: mcp`). */
export type RouteConfig = z.output<typeof routeSchema>;
/** A web route (`kind: web`): the gateway signs people in to a plain web app. */
export type WebRouteConfig = z.output<typeof webRouteSchema>;
export type AnyRouteConfig = GatewayConfig['routes'][number];
export type RouteDpopConfig = z.output<typeof routeDpopSchema>;
export type RateLimitConfig = z.output<typeof rateLimitSchema>;
export type ToolRuleConfig = z.output<typeof toolRuleSchema>;
export type ApprovalConfig = z.output<typeof approvalSchema>;
export type ApprovalsConfig = z.output<typeof approvalsSchema>;
export type ToolPinsConfig = z.output<typeof toolPinsSchema>;

/** The route as an MCP route; throws for a web route (for callers that hold MCP routes only). */
export function mcpRoute(route: AnyRouteConfig): RouteConfig {
  if (route.kind !== 'mcp') throw new Error(`route ${route.path} is a ${route.kind} route, not an MCP route`);
  return route;
}
