import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hashSecret } from './hash.ts';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { randomToken } from '../core/encoding.ts';
import { assertValidRedirectUri } from '../core/redirect-uri.ts';
import { WORKLOAD_IDENTITY_AUTH_METHOD } from '../core/client-metadata.ts';
import type { AuthServerConfig, StaticAgentConfig, StaticClientConfig } from '../config/schema.ts';
import { WorkloadIdentityTaken, type AgentAttributes, type Store } from '../store/types.ts';
import { hashPassword } from './passwords.ts';
import { assertConfiguredLogoutMetadata, configuredLogoutMetadata } from './logout-metadata.ts';

/**
 * Where a configured client's secret comes from: its environment variable, or else a secret
 * generated on first start and kept in `<data_dir>/secrets/<client_id>` (mode 0600).
 */
export function clientSecretFor(config: AuthServerConfig, client: StaticClientConfig): string {
  return secretFromEnvOrFile(config, client.client_secret_env, `${client.client_id.replace(/[^A-Za-z0-9._-]/g, '_')}.secret`, `client ${client.client_id}`);
}

/** The admin API token: `admin.token_env`, or generated into `<data_dir>/secrets/admin.token`. */
export function adminTokenFor(config: AuthServerConfig): string {
  return secretFromEnvOrFile(config, process.env[config.admin.token_env] ? config.admin.token_env : undefined, 'admin.token', 'admin');
}

/**
 * The key material that encrypts TOTP secrets at rest (docs/totp.md): `totp.key_env`, or generated
 * into `<data_dir>/secrets/totp.key` on first start. Every instance of a deployment needs the same.
 */
export function totpKeyMaterialFor(config: AuthServerConfig): string {
  return secretFromEnvOrFile(config, process.env[config.totp.key_env] ? config.totp.key_env : undefined, 'totp.key', 'totp');
}

/** A configured user's generated password (`generate_password`): `<data_dir>/secrets/<username>.password`, made on first start. */
export function generatedPasswordFor(config: AuthServerConfig, username: string): string {
  // 18 random bytes: 24 characters, typed by a person once, yet far beyond guessing.
  return secretFromEnvOrFile(config, undefined, `${username.replace(/[^A-Za-z0-9._-]/g, '_')}.password`, `user ${username}`, 18);
}

function secretFromEnvOrFile(config: AuthServerConfig, envName: string | undefined, fileName: string, what: string, bytes = 32): string {
  if (envName) {
    const value = process.env[envName];
    if (!value) throw new Error(`${what}: environment variable ${envName} is not set`);
    // Secrets are stored as a fast hash, which is only safe for high-entropy values.
    if (value.length < 32) throw new Error(`${what}: the secret in ${envName} is too short (at least 32 characters of random data)`);
    return value;
  }
  const dir = join(config.data_dir, 'secrets');
  const file = join(dir, fileName);
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const secret = randomToken(bytes);
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}

/** The file's values where it sets them; otherwise what an administrator set at runtime. */
function agentAttributes(agent: StaticAgentConfig, stored: AgentAttributes | undefined): AgentAttributes {
  return {
    agentType: agent.agent_type,
    owner: agent.owner ?? stored?.owner,
    expiresAt: agent.expires_at ? Math.floor(Date.parse(agent.expires_at) / 1000) : stored?.expiresAt,
  };
}

/** Writes the users and clients of the configuration into the store (idempotent, on every start). */
export async function seedFromConfig(config: AuthServerConfig, store: Store, now: number): Promise<void> {
  for (const user of config.users) {
    const existing = await store.users.findByUsername(user.username);
    let passwordHash = user.password_hash;
    if (!passwordHash && user.password_env) {
      const password = process.env[user.password_env];
      if (!password) throw new Error(`user ${user.username}: environment variable ${user.password_env} is not set`);
      passwordHash = await hashPassword(password);
    } else if (!passwordHash && user.generate_password) {
      passwordHash = await hashPassword(generatedPasswordFor(config, user.username));
    }
    await store.users.upsert({
      sub: user.sub ?? existing?.sub ?? randomUUID(),
      username: user.username,
      passwordHash,
      profile: { name: user.name, email: user.email },
      createdAt: existing?.createdAt ?? now,
      roles: user.roles,
      source: 'config',
    });
  }
  // Configured resources are written to the store, beside those an administrator added.
  for (const resource of config.resources) {
    await store.resources.upsert({ id: resource.id, definition: resource as unknown as Record<string, unknown>, source: 'config', updatedAt: now });
  }
  const configured = new Set(config.resources.map((r) => r.id));
  for (const stale of (await store.resources.list()).filter((r) => r.source === 'config' && !configured.has(r.id))) {
    await store.resources.delete(stale.id);
  }
  const agents = new Set(config.agents.map((a) => a.client_id));
  for (const client of [...config.clients, ...config.agents]) {
    client.redirect_uris.forEach(assertValidRedirectUri);
    assertConfiguredLogoutMetadata(client.client_id, client);
    const usesSecret = !client.workload_identity && client.token_endpoint_auth_method === 'client_secret_basic' || client.token_endpoint_auth_method === 'client_secret_post';
    const existing = await store.clients.find(client.client_id);
    await store.clients.upsert({
      clientId: client.client_id,
      source: 'config',
      metadata: {
        client_name: client.client_name,
        redirect_uris: client.redirect_uris,
        grant_types: client.grant_types,
        response_types: ['code'],
        // A platform identity is the client's only credential (issue 17, src/auth-server/workload/).
        token_endpoint_auth_method: client.workload_identity ? WORKLOAD_IDENTITY_AUTH_METHOD : client.token_endpoint_auth_method,
        ...(client.sub_profile ? { sub_profile: client.sub_profile } : {}),
        scope: client.scope,
        default_resource: client.default_resource,
        jwks: client.jwks,
        jwks_uri: client.jwks_uri,
        ...(client.authentication_policy ? { authentication_policy: client.authentication_policy } : {}),
        ...(client.require_pushed_authorization_requests || client.session_transfer ? { require_pushed_authorization_requests: true } : {}),
        ...configuredLogoutMetadata(client),
        ...(client.dpop_bound_access_tokens ? { dpop_bound_access_tokens: true } : {}),
      },
      agent: agents.has(client.client_id) ? agentAttributes(client as StaticAgentConfig, existing?.agent) : undefined,
      disabledAt: existing?.disabledAt,
      tokensValidAfter: existing?.tokensValidAfter,
      secretHash: usesSecret ? hashSecret(clientSecretFor(config, client)) : undefined,
      createdAt: existing?.createdAt ?? now,
      lastUsedAt: existing?.lastUsedAt,
      // Kept in workload_identities (one client each): how /token finds the client of a workload JWT.
      workloadIdentity: client.workload_identity,
    }).catch((error: unknown) => {
      if (error instanceof WorkloadIdentityTaken) throw new Error(`client ${client.client_id}: ${error.message} (added through the admin API); give one of them another workload identity`);
      throw error;
    });
  }
}
