import { z } from 'zod';
import type { ClientRecord } from '../../store/types.ts';

const iso = (seconds: number | undefined) => (seconds === undefined ? null : new Date(seconds * 1000).toISOString());

export const agentView = z.strictObject({
  client_id: z.string(),
  client_name: z.string().nullable(),
  agent_type: z.string(),
  owner: z.string().nullable(),
  enabled: z.boolean(),
  disabled_at: z.number().int().nullable().describe('Epoch seconds.'),
  tokens_valid_after: z.number().int().nullable().describe('Tokens issued at or before this (epoch seconds) stay dead.'),
  expires_at: z.string().nullable().describe('ISO 8601.'),
  created_at: z.number().int(),
  first_used_at: z.number().int().nullable(),
  source: z.enum(['config', 'dynamic', 'metadata_document', 'admin']),
});
export type AgentView = z.output<typeof agentView>;

export function toAgentView(record: ClientRecord): AgentView {
  return {
    client_id: record.clientId,
    client_name: record.metadata.client_name ?? null,
    agent_type: record.agent!.agentType,
    owner: record.agent!.owner ?? null,
    enabled: record.disabledAt === undefined,
    disabled_at: record.disabledAt ?? null,
    tokens_valid_after: record.tokensValidAfter ?? null,
    expires_at: iso(record.agent!.expiresAt),
    created_at: record.createdAt,
    first_used_at: record.lastUsedAt ?? null,
    source: record.source,
  };
}

export const clientView = z.strictObject({
  client_id: z.string(),
  client_name: z.string().nullable(),
  source: z.enum(['config', 'dynamic', 'metadata_document', 'admin']),
  kind: z.enum(['client', 'agent']),
  redirect_uris: z.array(z.string()),
  grant_types: z.array(z.string()),
  token_endpoint_auth_method: z.string(),
  scope: z.string().nullable(),
  default_resource: z.string().nullable(),
  authentication_policy: z.string().nullable(),
  post_logout_redirect_uris: z.array(z.string()),
  backchannel_logout_uri: z.string().nullable(),
  sub_profile: z.string().nullable().describe('The entity profile set on the client (draft-mcguinness-oauth-actor-profile); null: the default (ai_agent for agents, service otherwise).'),
  dpop_bound_access_tokens: z.boolean().describe('Token requests without a DPoP proof are refused (RFC 9449 §5.2).'),
  workload_identity: z
    .strictObject({ issuer: z.string(), subject: z.string(), claims: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])) })
    .nullable()
    .describe('The platform identity the client authenticates with (docs/workload-identity.md), if any.'),
  enabled: z.boolean(),
  created_at: z.number().int(),
  first_used_at: z.number().int().nullable(),
  agent: z.strictObject({ agent_type: z.string(), owner: z.string().nullable(), expires_at: z.string().nullable() }).nullable(),
});
export type ClientView = z.output<typeof clientView>;

export function toClientView(record: ClientRecord): ClientView {
  const m = record.metadata;
  return {
    client_id: record.clientId,
    client_name: m.client_name ?? null,
    source: record.source,
    kind: record.agent ? 'agent' : 'client',
    redirect_uris: m.redirect_uris ?? [],
    grant_types: m.grant_types ?? [],
    token_endpoint_auth_method: m.token_endpoint_auth_method ?? 'client_secret_basic',
    scope: m.scope ?? null,
    default_resource: m.default_resource ?? null,
    authentication_policy: typeof m.authentication_policy === 'string' ? m.authentication_policy : null,
    post_logout_redirect_uris: m.post_logout_redirect_uris ?? [],
    backchannel_logout_uri: m.backchannel_logout_uri ?? null,
    sub_profile: typeof m.sub_profile === 'string' ? m.sub_profile : null,
    dpop_bound_access_tokens: m.dpop_bound_access_tokens === true,
    workload_identity: record.workloadIdentity ? { issuer: record.workloadIdentity.issuer, subject: record.workloadIdentity.subject, claims: record.workloadIdentity.claims ?? {} } : null,
    enabled: record.disabledAt === undefined,
    created_at: record.createdAt,
    first_used_at: record.lastUsedAt ?? null,
    agent: record.agent ? { agent_type: record.agent.agentType, owner: record.agent.owner ?? null, expires_at: iso(record.agent.expiresAt) } : null,
  };
}
