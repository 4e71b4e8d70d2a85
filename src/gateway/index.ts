// The gateway's runtime-neutral part: mount `gatewayApp` (or single filters) in any Hono app.
export { gatewayApp, routeChain, type ChainDependencies } from './chain.ts';
export { compileRoute, RouteConfigError, type CompiledRoute, type CompileOptions } from './route.ts';
export { fetchForwarder, type Forwarder } from './filters/proxy.ts';
export type { GatewayObserver } from './filters/audit.ts';
export { validateMcp, type McpRequestContext } from './filters/validate.ts';
export { parseMcpMessage, checkStandardHeaders, JsonRpcError, JSON_RPC_ERRORS, PROTOCOL_STATELESS, PROTOCOL_WITH_SESSIONS, type McpMessage } from './mcp-message.ts';
export { GATEWAY_ERRORS } from './filters/refuse.ts';
export { jwtValidator, introspectionValidator, discoverIssuer, type TokenValidator, type TokenClaims } from './token-validator.ts';
export type { GatewayAuditEvent, GatewayEnv, Principal } from './types.ts';
export { resourceServer, type ResourceServer, type BearerCheck } from './resource-server.ts';
export { Mediator } from './mediator.ts';
export { approveCalls, URL_ELICITATION_REQUIRED, type ApproveOptions } from './filters/approve.ts';
export { ApprovalMemory, ApprovalStoreUnavailable, type ApprovalStore, type PendingApproval } from './approvals.ts';
export { TransactionClient, TransactionsUnavailable, TransactionNotCreated, type UseOutcome } from './transactions.ts';
export type { RateLimitStore, RateLimiter, RateLimitSpec, RateLimitOutcome } from './rate-limits.ts';
