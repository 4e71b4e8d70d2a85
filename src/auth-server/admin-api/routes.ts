import { ADMIN_OPERATIONS as ops, type Operation } from '../../admin/index.ts';

/**
 * The admin API's map: one line per endpoint, path (OpenAPI syntax, under /admin/api/v1), the
 * operation it runs, and how the input is read. Path parameters fill the input fields of the same
 * name; GET and DELETE take the rest from the query, the others from a JSON body. `etag`: the
 * answer is one item, sent with an ETag; `If-Match` is checked on the operations that change one.
 */
export interface AdminRoute {
  method: 'get' | 'post' | 'patch' | 'put' | 'delete';
  path: string;
  op: Operation;
  etag?: boolean;
  status?: 200 | 201;
}

export const ADMIN_ROUTES: AdminRoute[] = [
  { method: 'get', path: '/agents', op: ops.listAgents },
  { method: 'post', path: '/agents', op: ops.createAgent, status: 201 },
  { method: 'get', path: '/agents/{id}', op: ops.readAgent, etag: true },
  { method: 'patch', path: '/agents/{id}', op: ops.updateAgent, etag: true },
  { method: 'delete', path: '/agents/{id}', op: ops.deleteAgent },
  { method: 'get', path: '/clients', op: ops.listClients },
  { method: 'post', path: '/clients', op: ops.createClient, status: 201 },
  { method: 'get', path: '/clients/{id}', op: ops.readClient, etag: true },
  { method: 'patch', path: '/clients/{id}', op: ops.updateClient, etag: true },
  { method: 'delete', path: '/clients/{id}', op: ops.deleteClient },
  { method: 'get', path: '/users', op: ops.listUsers },
  { method: 'post', path: '/users', op: ops.createUser, status: 201 },
  { method: 'get', path: '/users/{username}', op: ops.readUser, etag: true },
  { method: 'patch', path: '/users/{username}', op: ops.updateUser, etag: true },
  { method: 'delete', path: '/users/{username}', op: ops.deleteUser },
  { method: 'delete', path: '/users/{username}/totp', op: ops.resetUserTotp },
  { method: 'get', path: '/users/{username}/grants', op: ops.listGrants },
  { method: 'delete', path: '/users/{username}/grants/{grant_id}', op: ops.revokeGrant },
  { method: 'get', path: '/users/{username}/consents', op: ops.listConsents },
  { method: 'delete', path: '/users/{username}/consents', op: ops.revokeConsent },
  { method: 'get', path: '/users/{username}/sessions', op: ops.listSessions },
  { method: 'delete', path: '/users/{username}/sessions', op: ops.signOut },
  { method: 'get', path: '/users/{username}/remembered', op: ops.listRemembered },
  { method: 'delete', path: '/users/{username}/remembered', op: ops.revokeRemembered },
  { method: 'get', path: '/resources', op: ops.listResources },
  { method: 'post', path: '/resources', op: ops.createResource, status: 201 },
  { method: 'get', path: '/resources/{id}', op: ops.readResource, etag: true },
  { method: 'put', path: '/resources/{id}', op: ops.updateResource, etag: true },
  { method: 'delete', path: '/resources/{id}', op: ops.deleteResource },
  { method: 'get', path: '/audit', op: ops.queryAudit },
  { method: 'get', path: '/transactions', op: ops.listTransactions },
  { method: 'get', path: '/transactions/{id}', op: ops.readTransaction, etag: true },
  { method: 'get', path: '/tool-pins', op: ops.listToolPins },
  { method: 'post', path: '/tool-pins/approve', op: ops.approveToolPin },
  { method: 'post', path: '/tool-pins/reject', op: ops.rejectToolPin },
  { method: 'get', path: '/keys', op: ops.listKeys },
  { method: 'post', path: '/keys/rotate', op: ops.rotateKeys, status: 201 },
  { method: 'get', path: '/agreements', op: ops.listAgreements },
  { method: 'post', path: '/agreements', op: ops.createAgreement, status: 201 },
  { method: 'get', path: '/agreements/{id}', op: ops.readAgreement, etag: true },
  { method: 'put', path: '/agreements/{id}', op: ops.updateAgreement, etag: true },
  { method: 'delete', path: '/agreements/{id}', op: ops.deleteAgreement },
  { method: 'get', path: '/policies', op: ops.listPolicies },
  { method: 'post', path: '/policies', op: ops.createPolicy, status: 201 },
  { method: 'get', path: '/policies/{name}', op: ops.readPolicy, etag: true },
  { method: 'put', path: '/policies/{name}', op: ops.updatePolicy, etag: true },
  { method: 'delete', path: '/policies/{name}', op: ops.deletePolicy },
  { method: 'get', path: '/registration', op: ops.readRegistration, etag: true },
  { method: 'get', path: '/reports/usage', op: ops.usageReport },
];

export const pathParams = (path: string) => [...path.matchAll(/\{([a-z_]+)\}/g)].map((m) => m[1]!);

/** `/agents/{id}` → `/agents/:id` (Hono). */
export const honoPath = (path: string) => path.replace(/\{([a-z_]+)\}/g, ':$1');

export const hasBody = (route: AdminRoute) => route.method === 'post' || route.method === 'patch' || route.method === 'put';
