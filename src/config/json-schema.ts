import { z } from 'zod';
import { authServerConfigSchema } from './schema.ts';

/** The published JSON Schemas, generated from the zod schemas (`npm run schema`). */
export function configJsonSchemas(): Record<string, unknown> {
  return {
    'auth-server.schema.json': {
      $id: 'https://mandate.dev/schema/auth-server.schema.json',
      title: 'Mandate authorization server configuration',
      ...z.toJSONSchema(authServerConfigSchema, { io: 'input' }),
    },
  };
}
