import { z } from 'zod';
import { authServerConfigSchema } from './schema.ts';
import { gatewayConfigSchema } from './gateway-schema.ts';
import { configReference } from './reference.ts';

/** The published JSON Schemas, generated from the zod schemas (`npm run schema`). */
export function configJsonSchemas(): Record<string, Record<string, unknown>> {
  return {
    'auth-server.schema.json': {
      $id: 'https://mandate.dev/schema/auth-server.schema.json',
      title: 'Mandate authorization server configuration',
      ...z.toJSONSchema(authServerConfigSchema, { io: 'input' }),
    },
    'gateway.schema.json': {
      $id: 'https://mandate.dev/schema/gateway.schema.json',
      title: 'Mandate MCP gateway configuration',
      ...z.toJSONSchema(gatewayConfigSchema, { io: 'input' }),
    },
  };
}

const INTRO = `# Configuration reference

Generated from the zod schemas in \`src/config/schema.ts\` by \`npm run schema\` (a test keeps this
page in sync). Every file is validated strictly: an unknown key is an error naming its path.
Secrets never go in these files: they come from the environment (\`*_env\` keys, \`DATABASE_URL\`)
or are generated on first start under \`data_dir\`.

Environment variables: \`DATABASE_URL\` (use PostgreSQL instead of SQLite), \`REDIS_URL\` (keep
sign-in interactions, sessions and replay caches in Redis, shared by every instance), \`LOG_LEVEL\` (pino
level, default \`info\`), \`MANDATE_ADMIN_TOKEN\` (the admin API token, the default of
\`admin.token_env\`; generated into \`<data_dir>/secrets/admin.token\` when unset). \`data_dir\`
is relative to the working directory. The gateway reads \`REDIS_URL\` too (rate limits shared by
every gateway) and the secrets its file names in \`*_secret_env\` keys.

`;

export function configDocs(): string {
  const schemas = configJsonSchemas();
  return `${INTRO}${configReference('Authorization server (`mandate serve auth --config <file>`)', schemas['auth-server.schema.json'] as never)}\n${configReference(
    'MCP gateway (`mandate serve gateway --config <file>`)',
    schemas['gateway.schema.json'] as never,
  )}`;
}
