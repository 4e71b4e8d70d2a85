// The gateway on Node: the server with its undici forwarder, audit file and Prometheus metrics.
export { startGateway, loadGatewayConfig, type GatewayHandle, type StartGatewayOptions } from './server.ts';
export { nodeForwarder } from './forwarder.ts';
export { AuditWriter } from './audit-writer.ts';
export { GatewayMetrics } from './metrics.ts';
export { RedisApprovals } from './redis-approvals.ts';
export { nodeRateLimits } from './rate-limits.ts';
