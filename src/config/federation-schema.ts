import { z } from 'zod';

/**
 * The authorization server's configuration for the 2026 standards (issue 17): DPoP (RFC 9449),
 * the identity providers whose ID-JAGs it accepts, this server as an enterprise IdP, and workload
 * identity federation. Part of authServerConfigSchema (schema.ts).
 */

/** Asymmetric JWS algorithms (RFC 7518 §3.1, RFC 8037): never `none`, never HMAC. */
export const ASYMMETRIC_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'EdDSA'] as const;

const clientRef = z.string().min(1);
const DEFAULT_DPOP_ALGORITHMS: (typeof ASYMMETRIC_ALGORITHMS)[number][] = ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA'];

export const dpopConfigSchema = z
  .strictObject({
    enabled: z.boolean().default(false).describe('Accept DPoP proofs at /token and /par and bind tokens to their key (RFC 9449); advertised as dpop_signing_alg_values_supported. Off: a DPoP header is ignored, as before.'),
    signing_alg_values: z
      .array(z.enum(ASYMMETRIC_ALGORITHMS))
      .min(1)
      .default(DEFAULT_DPOP_ALGORITHMS)
      .describe('Proof algorithms accepted (dpop_signing_alg_values_supported); none and HMAC never are.'),
    proof_max_age_seconds: z.number().int().min(1).max(3600).default(300).describe('Largest |now − iat| of a proof (RFC 9449 §11.1).'),
    require_nonce: z.boolean().default(false).describe('/token and /par answer use_dpop_nonce with a DPoP-Nonce until a proof carries a fresh server nonce (RFC 9449 §8).'),
    nonce_lifetime_seconds: z.number().int().min(1).max(3600).default(300).describe('How long a server nonce is accepted.'),
    nonce_key_env: z
      .string()
      .min(1)
      .default('MANDATE_DPOP_NONCE_KEY')
      .describe('Environment variable with the key of the stateless nonces; unset: data_dir/secrets/dpop-nonce.key (0600). Instances behind one issuer must share it.'),
  })
  .prefault({})
  .describe(`DPoP (RFC 9449): sender-constrained tokens.`);

export const trustedIdpsSchema = z
  .array(
    z.strictObject({
      issuer: z.url().describe('The enterprise IdP whose identity assertion authorization grants (ID-JAG) this server accepts.'),
      jwks_uri: z.url().optional().describe('Its keys; discovered from its metadata (RFC 8414, then OpenID discovery) when neither jwks nor jwks_uri is set.'),
      jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }).optional().describe('Its public keys, inline.'),
      algorithms: z.array(z.enum(ASYMMETRIC_ALGORITHMS)).min(1).default(['ES256', 'RS256']).describe('Signature algorithms accepted from it.'),
      clients: z.array(clientRef).optional().describe('Clients that may present its ID-JAGs; any confidential client when omitted.'),
      require_resource: z.boolean().default(true).describe('Refuse an ID-JAG without a resource claim (invalid_grant).'),
      max_lifetime_seconds: z.number().int().min(1).max(3600).default(600).describe('Longest exp − iat of an ID-JAG.'),
      link: z
        .strictObject({
          claims: z
            .array(z.enum(['sub', 'email']))
            .min(1)
            .default(['sub'])
            .describe("How a first assertion finds its local user, in order (a remembered link always wins). 'email' is opt-in and needs email_domains."),
          local_sub: z.boolean().default(false).describe("Take the IdP's sub as a local sub. Off: another issuer's sub is not ours."),
          email_domains: z
            .array(z.string().regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/, 'a lower-case domain name'))
            .min(1)
            .optional()
            .describe("The email domains this IdP speaks for: an email link is made only for an address in one of them (exact domain). Required when claims lists 'email'."),
          local_users: z
            .boolean()
            .default(false)
            .describe('Allow an email link to a user of the configuration file or the admin API, or one with admin roles. Off: only users of no such origin.'),
        })
        .prefault({}),
      jit_users: z.boolean().default(false).describe('Create a local user (source federated) when none matches; off: invalid_grant.'),
      allow_loopback: z.boolean().default(false).describe('Tests only: http and loopback addresses for its metadata and keys.'),
    }),
  )
  .default([])
  .describe(`Identity providers whose ID-JAGs (draft-ietf-oauth-identity-assertion-authz-grant) this server accepts with the jwt-bearer grant (docs/enterprise.md). Never published.`);

export const idJagSchema = z
  .strictObject({
    lifetime_seconds: z.number().int().min(1).max(600).default(300).describe('Lifetime of the ID-JAGs this server issues.'),
    audiences: z
      .array(
        z.strictObject({
          audience: z.url().describe('The issuer of the resource authorization server the ID-JAG is for.'),
          resources: z.array(z.url()).min(1).describe('Resources of that server an ID-JAG may name.'),
          clients: z.array(clientRef).min(1).describe('Clients that may ask for an ID-JAG for this audience.'),
          client_id: z.record(z.string(), z.string().min(1)).default({}).describe('Our client id → its client id at the resource authorization server; the same id when absent.'),
          scopes: z.array(z.string()).default([]).describe('Scopes an ID-JAG for this audience may carry.'),
          include_email: z.boolean().default(false).describe("Add the user's email to the ID-JAG."),
        }),
      )
      .default([]),
  })
  .prefault({})
  .describe(`This server as an enterprise IdP: token exchange of an ID token for an ID-JAG (requested_token_type urn:ietf:params:oauth:token-type:id-jag; docs/enterprise.md).`);

export const workloadIdentitySchema = z
  .strictObject({
    issuers: z
      .array(
        z.strictObject({
          issuer: z.url().describe('A platform issuer (Kubernetes, SPIFFE OIDC) whose JWTs identify clients (clients[].workload_identity).'),
          jwks_uri: z.url().optional().describe('Its keys; discovered from its metadata when unset.'),
          max_lifetime_seconds: z.number().int().min(1).max(86_400).default(3600).describe('Longest lifetime of a workload JWT.'),
          require_jti: z.boolean().default(true).describe('Refuse a JWT without jti (replay check). Kubernetes reuses projected tokens: turn off, with short token lifetimes.'),
          allow_loopback: z.boolean().default(false).describe('Tests only: http and loopback addresses for its metadata and keys.'),
        }),
      )
      .default([]),
  })
  .prefault({})
  .describe('Workload identity federation (SEP-1933, RFC 7523): platform JWTs as client authentication and as a grant. docs/workload-identity.md.');
