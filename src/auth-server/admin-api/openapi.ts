import { z } from 'zod';
import { ADMIN_SCOPES, adminResourceId, scopesFor } from '../../admin/scopes.ts';
import { ADMIN_ROUTES, hasBody, pathParams } from './routes.ts';
import { bootstrapOperation } from '../../admin/operations/bootstrap.ts';

type Json = Record<string, unknown>;

const errorBody = { type: 'object', required: ['error', 'error_description'], properties: { error: { type: 'string' }, error_description: { type: 'string' } }, additionalProperties: false };

/** A zod schema as a JSON Schema (2020-12, which OpenAPI 3.1 uses) to inline. */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Json {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Json;
  return rest;
}

const errorResponse = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });

/**
 * The OpenAPI 3.1 document of the admin API, generated from the operations' zod schemas and the
 * route table: what the API accepts and answers is what the document says (a test checks real
 * responses against it).
 */
export function adminOpenApi(issuer: string): Json {
  const paths: Record<string, Json> = {};
  for (const route of ADMIN_ROUTES) {
    const { op } = route;
    const inPath = pathParams(route.path);
    const input = op.input as unknown as z.ZodObject;
    const shape = input.shape ?? {};
    const parameters: Json[] = inPath.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' }, description: name === 'id' && route.path.startsWith('/resources') ? 'The resource identifier, URL-encoded.' : undefined }));
    let requestBody: Json | undefined;
    if (hasBody(route)) {
      const rest = input.omit(Object.fromEntries(inPath.map((k) => [k, true])) as never);
      requestBody = { required: true, content: { 'application/json': { schema: jsonSchema(rest, 'input') } } };
    } else {
      for (const [name, field] of Object.entries(shape)) {
        if (inPath.includes(name)) continue;
        const fieldSchema = jsonSchema(field as z.ZodType, 'input');
        parameters.push({ name, in: 'query', required: !(field as z.ZodType).safeParse(undefined).success, schema: fieldSchema, ...(fieldSchema.description ? { description: fieldSchema.description } : {}) });
      }
    }
    const needed = scopesFor(op.area, op.access);
    const status = String(route.status ?? 200);
    const headers = route.etag ? { ETag: { description: 'The item\'s version, for If-Match.', schema: { type: 'string' } } } : undefined;
    const operation: Json = {
      operationId: op.name,
      summary: op.summary,
      tags: [op.area],
      'x-mandate-scopes': needed,
      description: `Needs one of: ${needed.join(', ')}.${route.etag && route.method !== 'get' ? ' Send If-Match with the ETag you read to refuse a change made meanwhile (412).' : ''}`,
      security: [{ admin: [needed[needed.length - 1]] }],
      parameters: [
        ...parameters,
        ...(route.etag && route.method !== 'get' ? [{ name: 'If-Match', in: 'header', required: false, schema: { type: 'string' }, description: 'An ETag from a read; 412 precondition_failed when the item changed.' }] : []),
      ],
      ...(requestBody ? { requestBody } : {}),
      responses: {
        [status]: { description: 'Done.', ...(headers ? { headers } : {}), content: { 'application/json': { schema: jsonSchema(op.output, 'output') } } },
        '400': errorResponse('invalid_request: the input is invalid.'),
        '401': errorResponse('invalid_token: no token, or not a valid token for the admin resource.'),
        '403': errorResponse('insufficient_scope: the token lacks the scope named in WWW-Authenticate.'),
        '404': errorResponse('not_found.'),
        '409': errorResponse('conflict: the item exists, or comes from the configuration file.'),
        ...(route.etag && route.method !== 'get' ? { '412': errorResponse('precondition_failed: the item changed since the ETag was read.') } : {}),
      },
    };
    paths[route.path] = { ...paths[route.path], [route.method]: operation };
  }
  paths['/bootstrap'] = {
    post: {
      operationId: bootstrapOperation.name,
      summary: bootstrapOperation.summary,
      tags: ['users'],
      description: 'With the static admin token (MANDATE_ADMIN_TOKEN or <data_dir>/secrets/admin.token), not an admin token. 404 when admin.bootstrap_token is false.',
      security: [{ bootstrapToken: [] }],
      requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(bootstrapOperation.input, 'input') } } },
      responses: {
        '201': { description: 'The first admin.', content: { 'application/json': { schema: jsonSchema(bootstrapOperation.output, 'output') } } },
        '400': errorResponse('invalid_request: the input is invalid.'),
        '401': errorResponse('invalid_token: not the static admin token.'),
        '404': errorResponse('not_found: the bootstrap token is disabled.'),
        '409': errorResponse('conflict: an admin exists already.'),
      },
    },
  };
  const base = issuer.replace(/\/$/, '');
  return {
    openapi: '3.1.0',
    info: { title: 'Mandate admin API', version: '1', description: 'Administration of the Mandate authorization server (docs/admin.md). Tokens for the admin resource only.' },
    servers: [{ url: `${base}/admin/api/v1` }],
    security: [{ admin: [] }],
    components: {
      securitySchemes: {
        bootstrapToken: { type: 'http', scheme: 'bearer', description: 'The static admin token: only for POST /bootstrap.' },
        admin: {
          type: 'oauth2',
          description: `Access tokens for the resource ${adminResourceId(base)} (authorization code + PKCE; the scopes are narrowed to the admin's roles).`,
          flows: {
            authorizationCode: {
              authorizationUrl: `${base}/authorize`,
              tokenUrl: `${base}/token`,
              refreshUrl: `${base}/token`,
              scopes: Object.fromEntries(ADMIN_SCOPES.map((s) => [s, s])),
            },
          },
        },
      },
      schemas: { Error: errorBody },
    },
    paths,
  };
}
