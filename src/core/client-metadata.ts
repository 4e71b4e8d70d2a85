import { z } from 'zod';

/**
 * Client authentication methods at the token endpoint (RFC 7591 §2, OIDC Core §9), and Mandate's
 * `workload_identity` (a platform JWT as the client assertion, issue 17): that one only for clients
 * of the configuration file or the admin API, never at self-registration.
 */
export const TOKEN_ENDPOINT_AUTH_METHODS = ['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt', 'workload_identity'] as const;
export type TokenEndpointAuthMethod = (typeof TOKEN_ENDPOINT_AUTH_METHODS)[number];

export const GRANT_TYPES = [
  'authorization_code',
  'refresh_token',
  'client_credentials',
  'urn:ietf:params:oauth:grant-type:token-exchange',
  'urn:ietf:params:oauth:grant-type:device_code',
  'urn:ietf:params:oauth:grant-type:jwt-bearer',
] as const;

/**
 * Issue 17: a Mandate `token_endpoint_auth_method` for clients that authenticate with a platform
 * (workload) JWT, RFC 7523 §2.2 with `client_id` in the body (src/auth-server/workload/). Refused at
 * self-registration: the platform identity is an administrator's statement.
 */
export const WORKLOAD_IDENTITY_AUTH_METHOD = 'workload_identity' satisfies TokenEndpointAuthMethod;

/** RFC 8628 §3.4 */
export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/**
 * A name the client chose is shown to people: control (Cc) and format (Cf) characters, such as
 * U+202E RIGHT-TO-LEFT OVERRIDE, could make it read as another name, so they are refused.
 */
const displayName = z
  .string()
  .max(200)
  .refine((v) => !/[\p{Cc}\p{Cf}]/u.test(v), 'must not contain control or format characters (such as U+202E, which reorders text)');

const jwkSet = z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }).loose();

/**
 * Client metadata as registered (RFC 7591 §2) or read from a client ID metadata document.
 * Unknown members are kept (RFC 7591 §2: the server may ignore them) but never trusted.
 */
export const clientMetadataSchema = z
  .object({
    redirect_uris: z.array(z.string()).default([]),
    token_endpoint_auth_method: z.enum(TOKEN_ENDPOINT_AUTH_METHODS).default('client_secret_basic'),
    grant_types: z.array(z.string()).default(['authorization_code']),
    response_types: z.array(z.string()).default(['code']),
    client_name: displayName.optional(),
    client_uri: z.string().url().optional(),
    logo_uri: z.string().url().optional(),
    scope: z.string().optional(),
    contacts: z.array(z.string()).optional(),
    tos_uri: z.string().url().optional(),
    policy_uri: z.string().url().optional(),
    jwks_uri: z.string().url().optional(),
    jwks: jwkSet.optional(),
    software_id: z.string().optional(),
    software_version: z.string().optional(),
    application_type: z.enum(['web', 'native']).optional(),
    /** RFC 9126 §6: the client's authorization requests must be pushed to /par. */
    require_pushed_authorization_requests: z.boolean().optional(),
    id_token_signed_response_alg: z.literal('ES256').optional(),
    /** Mandate extension: the resource used when an authorization request names none (DESIGN §3). */
    default_resource: z.string().url().optional(),
    /** OpenID Connect RP-Initiated Logout 1.0 §3.1: where /logout may send the browser back. */
    post_logout_redirect_uris: z.array(z.string()).optional(),
    /** OpenID Connect Back-Channel Logout 1.0 §2.2: where logout tokens are POSTed. */
    backchannel_logout_uri: z.string().optional(),
    backchannel_logout_session_required: z.boolean().optional(),
    /** RFC 9449 §5.2: the client always uses DPoP; a token request without a proof is refused (issue 17, WP-B edit). */
    dpop_bound_access_tokens: z.boolean().optional(),
  })
  .loose();

export type ClientMetadataInput = z.input<typeof clientMetadataSchema>;
export type ClientMetadata = z.output<typeof clientMetadataSchema>;

/** A client as the authorization server sees it, whatever its source. */
export interface Client {
  clientId: string;
  /** Where the client came from: config file, dynamic registration, a metadata document URL, or the admin API. */
  source: 'config' | 'dynamic' | 'metadata_document' | 'admin';
  metadata: ClientMetadata;
  /** SHA-256 of the client secret (confidential clients using client_secret_*). */
  secretHash?: string;
  createdAt: number;
}

export function isPublicClient(client: Client): boolean {
  return client.metadata.token_endpoint_auth_method === 'none';
}
