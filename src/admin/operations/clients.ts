import { z } from 'zod';
import { randomToken } from '../../core/encoding.ts';
import { GRANT_TYPES, TOKEN_ENDPOINT_AUTH_METHODS } from '../../core/client-metadata.ts';
import { assertValidRedirectUri } from '../../core/redirect-uri.ts';
import { assertConfiguredLogoutMetadata } from '../../auth-server/logout-metadata.ts';
import { hashSecret } from '../../auth-server/hash.ts';
import { WorkloadIdentityTaken, type ClientRecord } from '../../store/types.ts';
import { AdminError, fromConfig, notFound } from '../errors.ts';
import { defineOperation, type AdminDeps } from '../operation.ts';
import { page, pageInput, paginate } from '../pagination.ts';
import { clientView, toClientView } from './client-views.ts';
import { applyLifecycle } from './lifecycle.ts';

const id = z.string().min(1).max(500).describe('The client_id.');

export async function findClient(deps: Pick<AdminDeps, 'store'>, clientId: string, kind?: 'agent'): Promise<ClientRecord> {
  const record = await deps.store.clients.find(clientId);
  if (!record || (kind === 'agent' && !record.agent)) throw notFound(kind ?? 'client');
  return record;
}

const usesSecret = (method: string) => method === 'client_secret_basic' || method === 'client_secret_post';

/** Metadata an admin may set on a client (the configuration file's client keys, minus the secret's source). */
export const clientFields = {
  client_name: z.string().min(1).max(200).optional(),
  redirect_uris: z.array(z.string()).max(20).optional(),
  grant_types: z.array(z.enum(GRANT_TYPES)).optional(),
  scope: z.string().max(2000).optional().describe('Space-separated scopes the client may request; any scope of a resource when omitted.'),
  default_resource: z.url().optional(),
  authentication_policy: z.string().min(1).optional().describe('The authentication policy users go through when signing in through this client.'),
  post_logout_redirect_uris: z.array(z.string()).max(20).optional().describe('Where /logout may send the browser after signing out (exact URLs, http or https, no fragment).'),
  backchannel_logout_uri: z.string().optional().describe('Where logout tokens are POSTed when a session the client got a grant in ends (OpenID Connect Back-Channel Logout 1.0).'),
  backchannel_logout_session_required: z.boolean().optional().describe('Whether the client needs sid in logout tokens (always sent).'),
  sub_profile: z
    .string()
    .regex(/^[\x21\x23-\x5B\x5D-\x7E]+(?: [\x21\x23-\x5B\x5D-\x7E]+)*$/)
    .optional()
    .describe("The client's entity profile (draft-mcguinness-oauth-actor-profile): act.sub_profile when it acts, and the top-level sub_profile of its own tokens; default ai_agent for agents, service otherwise."),
  dpop_bound_access_tokens: z
    .boolean()
    .optional()
    .describe('The client always uses DPoP (RFC 9449 §5.2): a token request without a DPoP proof is refused with invalid_request. Default false.'),
};

/** A platform identity (issue 17, SEP-1933, docs/workload-identity.md): the (iss, sub) of the client's workload JWTs. */
export const workloadIdentityInput = z
  .strictObject({
    issuer: z.url().describe('A platform issuer listed in workload_identity.issuers; https (http only for a loopback issuer with allow_loopback).'),
    subject: z.string().min(1).max(500).describe('The `sub` of its JWTs, e.g. system:serviceaccount:agents:planner.'),
    claims: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional().describe('Other claims its JWTs must carry with exactly these values.'),
  })
  .describe('The client authenticates with a platform JWT with this iss and sub (docs/workload-identity.md); the issuer must be in workload_identity.issuers. No secret.');
type WorkloadIdentityInput = z.output<typeof workloadIdentityInput>;

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * A platform identity an admin may give a client: its issuer on the configuration file's
 * allow-list (`workload_identity.issuers`: which platforms this server trusts is the file's say),
 * and https, unless that entry allows a loopback issuer (tests) and this is one.
 */
function checkWorkloadIdentity(deps: Pick<AdminDeps, 'config'>, workload: WorkloadIdentityInput): void {
  const entry = deps.config.workload_identity.issuers.find((i) => i.issuer === workload.issuer);
  if (!entry) throw new AdminError('invalid_request', `invalid input: workload_identity.issuer ${workload.issuer} is not listed in workload_identity.issuers`);
  const url = new URL(workload.issuer);
  const loopback = LOOPBACK_HOSTS.has(url.hostname) || /^127\.\d+\.\d+\.\d+$/.test(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && entry.allow_loopback && loopback)) {
    throw new AdminError('invalid_request', `invalid input: workload_identity.issuer must be an https URL (http only for a loopback issuer with allow_loopback), got ${workload.issuer}`);
  }
}

const takenAsConflict = (error: unknown): never => {
  if (error instanceof WorkloadIdentityTaken) throw new AdminError('conflict', error.message);
  throw error;
};

/** The logout members an admin set, checked as a configured client's are (an admin chose them). */
function logoutFields(clientId: string, input: { post_logout_redirect_uris?: string[]; backchannel_logout_uri?: string; backchannel_logout_session_required?: boolean }) {
  try {
    assertConfiguredLogoutMetadata(clientId, { post_logout_redirect_uris: input.post_logout_redirect_uris ?? [], backchannel_logout_uri: input.backchannel_logout_uri });
  } catch (error) {
    throw new AdminError('invalid_request', `invalid input: ${(error as Error).message}`);
  }
  return Object.fromEntries(
    Object.entries({ post_logout_redirect_uris: input.post_logout_redirect_uris, backchannel_logout_uri: input.backchannel_logout_uri, backchannel_logout_session_required: input.backchannel_logout_session_required }).filter(([, v]) => v !== undefined),
  );
}

function checkPolicy(deps: Pick<AdminDeps, 'authenticationPolicy'>, name: string | undefined) {
  if (name !== undefined && !deps.authenticationPolicy(name)) throw new AdminError('invalid_request', `invalid input: authentication_policy: unknown policy ${name}`);
}

export const clientCreated = clientView.extend({ client_secret: z.string().nullable().describe('Shown once: only its hash is kept.') });

/** Creates a client (or, with `agent`, an agent) in the store; returns its secret once. */
export async function createClient(
  deps: AdminDeps,
  input: { client_id?: string; token_endpoint_auth_method: (typeof TOKEN_ENDPOINT_AUTH_METHODS)[number]; agent?: { agent_type: string; owner?: string; expires_at?: string } } & {
    client_name?: string;
    redirect_uris?: string[];
    grant_types?: string[];
    scope?: string;
    default_resource?: string;
    authentication_policy?: string;
    post_logout_redirect_uris?: string[];
    backchannel_logout_uri?: string;
    backchannel_logout_session_required?: boolean;
    sub_profile?: string;
    dpop_bound_access_tokens?: boolean;
    workload_identity?: WorkloadIdentityInput;
  },
): Promise<z.output<typeof clientCreated>> {
  checkPolicy(deps, input.authentication_policy);
  const clientId = input.client_id ?? `${input.agent ? 'ag' : 'cl'}_${randomToken(12)}`;
  if (await deps.store.clients.find(clientId)) throw new AdminError('conflict', 'a client with this client_id exists');
  const redirectUris = input.redirect_uris ?? [];
  try {
    redirectUris.forEach(assertValidRedirectUri);
  } catch (error) {
    throw new AdminError('invalid_request', `invalid redirect URI: ${(error as Error).message}`);
  }
  // A platform identity (issue 17, docs/workload-identity.md) is the client's only credential; its
  // issuer must be on the configuration file's allow-list.
  const workload = input.workload_identity;
  if (input.token_endpoint_auth_method === 'workload_identity' && !workload) throw new AdminError('invalid_request', 'invalid input: token_endpoint_auth_method workload_identity needs workload_identity');
  if (workload) checkWorkloadIdentity(deps, workload);
  if (workload) input = { ...input, token_endpoint_auth_method: 'workload_identity' };
  const secret = usesSecret(input.token_endpoint_auth_method) ? randomToken(32) : undefined;
  const record: ClientRecord = {
    clientId,
    source: 'admin',
    metadata: {
      client_name: input.client_name,
      redirect_uris: redirectUris,
      grant_types: input.grant_types ?? (input.agent ? ['client_credentials', 'refresh_token', 'urn:ietf:params:oauth:grant-type:token-exchange'] : ['authorization_code', 'refresh_token']),
      response_types: ['code'],
      token_endpoint_auth_method: input.token_endpoint_auth_method,
      scope: input.scope,
      default_resource: input.default_resource,
      ...(input.authentication_policy ? { authentication_policy: input.authentication_policy } : {}),
      ...(input.sub_profile ? { sub_profile: input.sub_profile } : {}),
      ...(input.dpop_bound_access_tokens ? { dpop_bound_access_tokens: true } : {}),
      ...logoutFields(clientId, input),
    },
    agent: input.agent && {
      agentType: input.agent.agent_type,
      owner: input.agent.owner,
      expiresAt: input.agent.expires_at ? Math.floor(Date.parse(input.agent.expires_at) / 1000) : undefined,
    },
    secretHash: secret && hashSecret(secret),
    createdAt: deps.now(),
    ...(workload ? { workloadIdentity: workload } : {}),
  };
  await deps.store.clients.upsert(record).catch(takenAsConflict);
  if (record.agent) await deps.refreshDisabled();
  return { ...toClientView(record), client_secret: secret ?? null };
}

/** Deletes a client that is not in the configuration file, after revoking its grants and tokens. */
export async function deleteClient(deps: AdminDeps, record: ClientRecord): Promise<{ deleted: true }> {
  if (record.source === 'config') throw fromConfig(record.agent ? 'agent' : 'client', 'remove it there');
  await deps.store.grants.revokeByClient(record.clientId, deps.now());
  await deps.store.clients.delete(record.clientId);
  await deps.refreshDisabled();
  return { deleted: true };
}

export const listClients = defineOperation({
  name: 'clients.list',
  area: 'clients',
  access: 'read',
  summary: 'List clients (agents included), ordered by client_id.',
  input: z.strictObject({ ...pageInput, kind: z.enum(['client', 'agent']).optional(), source: z.enum(['config', 'dynamic', 'admin']).optional() }),
  output: page(clientView),
  async run(deps, input) {
    const all = (await deps.store.clients.list()).filter((r) => (!input.source || r.source === input.source) && (!input.kind || (input.kind === 'agent') === (r.agent !== undefined)));
    const result = paginate(all, (r) => r.clientId, input);
    return { items: result.items.map(toClientView), next_cursor: result.next_cursor };
  },
});

export const readClient = defineOperation({
  name: 'clients.read',
  area: 'clients',
  access: 'read',
  summary: 'Read one client.',
  input: z.strictObject({ id }),
  output: clientView,
  run: async (deps, input) => toClientView(await findClient(deps, input.id)),
});

export const createClientOp = defineOperation({
  name: 'clients.create',
  area: 'clients',
  access: 'write',
  summary: 'Create a client. Confidential clients get a secret, returned once.',
  input: z.strictObject({
    client_id: z.string().regex(/^[A-Za-z0-9._:-]{1,100}$/).optional().describe('Generated when omitted.'),
    token_endpoint_auth_method: z.enum(TOKEN_ENDPOINT_AUTH_METHODS).default('client_secret_basic'),
    workload_identity: workloadIdentityInput.optional(),
    ...clientFields,
  }),
  output: clientCreated,
  target: (input) => ({ clientId: input.client_id }),
  run: (deps, input) => createClient(deps, input),
});

export const updateClient = defineOperation({
  name: 'clients.update',
  area: 'clients',
  access: 'write',
  summary:
    "Change a client: enable or disable it (any client), or its metadata, workload identity and DPoP binding (not for clients of the configuration file). A change applies to the client's next request, on every instance.",
  input: z.strictObject({
    id,
    enabled: z.boolean().optional(),
    workload_identity: workloadIdentityInput.optional().describe('A new platform identity for a client that authenticates with one (token_endpoint_auth_method workload_identity).'),
    ...clientFields,
  }),
  output: clientView,
  current: async (deps, input) => toClientView(await findClient(deps, input.id)),
  target: (input) => ({ clientId: input.id, data: { change: Object.keys(input).filter((k) => k !== 'id') } }),
  async run(deps, input) {
    let record = await findClient(deps, input.id);
    const { id: _id, enabled, workload_identity: workload, ...fields } = input;
    const metadata = Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
    if (Object.keys(metadata).length > 0 || workload) {
      if (record.source === 'config') throw fromConfig('client');
      checkPolicy(deps, metadata.authentication_policy as string | undefined);
      try {
        (metadata.redirect_uris as string[] | undefined)?.forEach(assertValidRedirectUri);
      } catch (error) {
        throw new AdminError('invalid_request', `invalid redirect URI: ${(error as Error).message}`);
      }
      logoutFields(record.clientId, metadata);
      if (workload) {
        checkWorkloadIdentity(deps, workload);
        // The platform JWT replaces no other credential here: a client with a secret or keys keeps
        // them, and one without a platform identity is not silently left without any.
        const method = record.metadata.token_endpoint_auth_method ?? 'client_secret_basic';
        if (method !== 'workload_identity') {
          throw new AdminError('invalid_request', `invalid input: workload_identity: ${record.clientId} authenticates with ${method}, not a workload identity; create a new client for a platform identity`);
        }
      }
      const next = { ...record.metadata, ...metadata };
      if (next.dpop_bound_access_tokens === false) delete next.dpop_bound_access_tokens;
      await deps.store.clients.update(record.clientId, { metadata: next, ...(workload ? { workloadIdentity: workload } : {}) }).catch(takenAsConflict);
      auditCredentialChanges(deps, record, { workload, dpop: fields.dpop_bound_access_tokens });
      record = await findClient(deps, input.id);
    }
    if (enabled !== undefined) record = await applyLifecycle(deps, record, { enabled });
    return toClientView(record);
  },
});

/** The domain events of a change to how a client authenticates or binds its tokens (beside `admin.clients.update`). */
function auditCredentialChanges(deps: Pick<AdminDeps, 'audit' | 'now'>, before: ClientRecord, change: { workload?: WorkloadIdentityInput; dpop?: boolean }): void {
  const at = deps.now();
  const previous = before.workloadIdentity;
  if (change.workload && JSON.stringify(previous) !== JSON.stringify(change.workload)) {
    deps.audit.record({
      at,
      type: 'client.workload_identity_changed',
      outcome: 'success',
      clientId: before.clientId,
      data: { issuer: change.workload.issuer, subject: change.workload.subject, previous_issuer: previous?.issuer ?? null, previous_subject: previous?.subject ?? null },
    });
  }
  if (change.dpop !== undefined && change.dpop !== (before.metadata.dpop_bound_access_tokens === true)) {
    deps.audit.record({ at, type: 'client.dpop_binding_changed', outcome: 'success', clientId: before.clientId, data: { dpop_bound_access_tokens: change.dpop } });
  }
}

export const deleteClientOp = defineOperation({
  name: 'clients.delete',
  area: 'clients',
  access: 'write',
  summary: 'Delete a client (not one of the configuration file): its grants and tokens are revoked first.',
  input: z.strictObject({ id }),
  output: z.strictObject({ deleted: z.literal(true) }),
  current: async (deps, input) => toClientView(await findClient(deps, input.id)),
  target: (input) => ({ clientId: input.id }),
  run: async (deps, input) => deleteClient(deps, await findClient(deps, input.id)),
});
