/**
 * The Worker's audit line: the gateway's audit event as one JSON line, marked
 * `"audit": "mandate-gateway"`, with the tool call's arguments replaced by the SHA-256 (hex) of their
 * JSON — never the arguments themselves (they may hold personal data or secrets), exactly as the
 * Node gateway's writer does (src/gateway/node/audit-writer.ts), with WebCrypto instead of
 * node:crypto. Never rejects: an event that cannot be serialized in full is still written, with the
 * fields that can be and the reason.
 */
import type { GatewayAuditEvent } from '../types.ts';

const encoder = new TextEncoder();

async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(text)));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

export async function workerAuditLine(event: GatewayAuditEvent): Promise<string> {
  const { arguments: args, ...rest } = event;
  try {
    if (args !== undefined) rest.args_sha256 = await sha256Hex(JSON.stringify(args));
    return JSON.stringify({ audit: 'mandate-gateway', ...rest });
  } catch (error) {
    const audit_error = `the event could not be serialized in full: ${(error as Error).message}`;
    try {
      return JSON.stringify({ audit: 'mandate-gateway', ...rest, args_sha256: undefined, audit_error });
    } catch {
      const { time, request_id, route, http_method, protocol_version, kind, method, tool, sub, client_id, decision, rejection, reason, status, latency_ms } = event;
      return JSON.stringify({ audit: 'mandate-gateway', time, request_id, route, http_method, protocol_version, kind, method, tool, sub, client_id, decision, rejection, reason, status, latency_ms, audit_error });
    }
  }
}
