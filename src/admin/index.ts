/**
 * The admin plane's service layer (docs/admin.md): one operation per admin task, each validating
 * its input, checking the caller's scopes, acting and auditing (`invoke`). The admin API, the
 * console and the admin MCP server are thin front ends over `ADMIN_OPERATIONS`. No HTTP here.
 */
import { createAgent, deleteAgent, listAgents, readAgent, updateAgent } from './operations/agents.ts';
import { queryAudit } from './operations/audit.ts';
import { createClientOp, deleteClientOp, listClients, readClient, updateClient } from './operations/clients.ts';
import { listConsents, listGrants, revokeConsent, revokeGrant } from './operations/grants.ts';
import { listKeys, rotateKeys } from './operations/keys.ts';
import { usageReport } from './operations/reports.ts';
import { createResource, deleteResource, listResources, readResource, updateResource } from './operations/resources.ts';
import {
  createAgreement,
  createPolicy,
  deleteAgreement,
  deletePolicy,
  listAgreements,
  listPolicies,
  readAgreement,
  readPolicy,
  readRegistration,
  updateAgreement,
  updatePolicy,
} from './operations/settings.ts';
import { listSessions, signOut } from './operations/sessions.ts';
import { listRemembered, revokeRemembered } from './operations/remembered.ts';
import { listTransactions, readTransaction } from './operations/transactions.ts';
import { approveToolPin, listToolPins, rejectToolPin } from './operations/pins.ts';
import { createUserOp, deleteUser, listUsers, readUser, resetUserTotp, updateUser } from './operations/users.ts';
import type { Operation } from './operation.ts';

export const ADMIN_OPERATIONS = {
  listAgents,
  readAgent,
  createAgent,
  updateAgent,
  deleteAgent,
  listClients,
  readClient,
  createClient: createClientOp,
  updateClient,
  deleteClient: deleteClientOp,
  listUsers,
  readUser,
  createUser: createUserOp,
  updateUser,
  deleteUser,
  resetUserTotp,
  listGrants,
  revokeGrant,
  listConsents,
  revokeConsent,
  listSessions,
  signOut,
  listRemembered,
  revokeRemembered,
  listResources,
  readResource,
  createResource,
  updateResource,
  deleteResource,
  queryAudit,
  listTransactions,
  readTransaction,
  listToolPins,
  approveToolPin,
  rejectToolPin,
  listKeys,
  rotateKeys,
  listAgreements,
  readAgreement,
  createAgreement,
  updateAgreement,
  deleteAgreement,
  listPolicies,
  readPolicy,
  createPolicy,
  updatePolicy,
  deletePolicy,
  readRegistration,
  usageReport,
} satisfies Record<string, Operation>;

export type AdminOperationName = keyof typeof ADMIN_OPERATIONS;

export { invoke, etagOf, isDestructive, type AdminDeps, type Operation } from './operation.ts';
export { AdminError, type AdminErrorCode } from './errors.ts';
export type { Caller, FrontEnd } from './caller.ts';
export { runBootstrap } from './operations/bootstrap.ts';
export * from './scopes.ts';
