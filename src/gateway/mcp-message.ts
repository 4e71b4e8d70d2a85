/**
 * MCP messages as the gateway sees them: JSON-RPC 2.0 shape, the typed context later filters
 * read (kind, method, tool, arguments, protocol version), and the 2026-07-28 standard headers
 * (SEP-2243) that must mirror the body. Runtime-neutral: no Node, no HTTP framework.
 */

/** The protocol revisions in use (DESIGN §8): with sessions, and stateless with standard headers. */
export const PROTOCOL_WITH_SESSIONS = '2025-11-25';
export const PROTOCOL_STATELESS = '2026-07-28';

/** JSON-RPC 2.0 §5.1 error codes, plus MCP's -32020 for headers that disagree with the body. */
export const JSON_RPC_ERRORS = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
  headerMismatch: -32020,
} as const;

export class JsonRpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly id: string | number | null = null,
    /** The HTTP status this error is answered with. */
    readonly status = 400,
    /** The audit `rejection`, when more specific than `malformed`. */
    readonly rejection?: string,
  ) {
    super(message);
    this.name = 'JsonRpcError';
  }

  toResponseObject() {
    return { jsonrpc: '2.0' as const, id: this.id, error: { code: this.code, message: this.message } };
  }
}

export type McpMessageKind = 'request' | 'notification' | 'response';

/** What filters after validation know about the message. */
export interface McpMessage {
  kind: McpMessageKind;
  id?: string | number;
  method?: string;
  params?: Record<string, unknown>;
  /** `tools/call` only: the tool and its arguments. */
  toolName?: string;
  arguments?: Record<string, unknown>;
}

/** Methods whose target travels in `Mcp-Name`, and the parameter it mirrors (SEP-2243). */
const NAME_PARAMS: Record<string, 'name' | 'uri'> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
  'resources/subscribe': 'uri',
  'resources/unsubscribe': 'uri',
};

/**
 * Every method MCP defines (2025-11-25 and 2026-07-28, both directions). A client's method that
 * differs from one of them only in case, whitespace, invisible or compatibility characters
 * (`TOOLS/CALL`, `tools/call `) is refused: the gateway authorizes on the exact string, and an
 * upstream that dispatched it leniently would run a tool call nobody authorized.
 */
export const MCP_METHODS: ReadonlySet<string> = new Set([
  'initialize', 'ping', 'server/discover', 'tools/list', 'tools/call', 'resources/list', 'resources/read', 'resources/templates/list',
  'resources/subscribe', 'resources/unsubscribe', 'prompts/list', 'prompts/get', 'completion/complete', 'logging/setLevel',
  'subscriptions/listen', 'tasks/get', 'tasks/list', 'tasks/result', 'tasks/cancel', 'tasks/update',
  'sampling/createMessage', 'elicitation/create', 'roots/list',
  'notifications/initialized', 'notifications/cancelled', 'notifications/progress', 'notifications/message',
  'notifications/roots/list_changed', 'notifications/tools/list_changed', 'notifications/prompts/list_changed',
  'notifications/resources/list_changed', 'notifications/resources/updated', 'notifications/elicitation/complete',
  'notifications/tasks/status', 'notifications/subscriptions/acknowledged',
]);

/** A method or tool name folded the ways a lenient reader might fold it (case, white space, invisible and compatibility characters). */
export const foldName = (name: string): string => name.normalize('NFKC').replace(/[\s\p{Cc}\p{Cf}]/gu, '').toLowerCase();
const foldMethod = foldName;
const FOLDED_METHODS = new Map([...MCP_METHODS].map((method) => [foldMethod(method), method]));

/** The MCP method a name imitates without being it, if any. */
export function imitatedMethod(method: string): string | undefined {
  if (MCP_METHODS.has(method)) return undefined;
  return FOLDED_METHODS.get(foldMethod(method));
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
/**
 * MCP ids are strings or integers, never null (MCP basic/index "Requests"). Integers beyond 2^53
 * would come back from the upstream as a different number once the gateway re-serializes them.
 */
const validId = (id: unknown): id is string | number => typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id));

/**
 * MCP's notifications are all `notifications/…`. Anything else without an id is a request that
 * dropped its id — a `tools/call` sent that way would run upstream while skipping everything the
 * gateway decides for requests (tool authorization, rate limits, result filtering).
 */
const NOTIFICATION_PREFIX = 'notifications/';

/**
 * Checks one JSON-RPC 2.0 message and types it. Batches are refused: MCP removed them in
 * 2025-06-18 (2025-11-25 has none either). Throws `JsonRpcError` -32600 with the reason.
 */
export function parseMcpMessage(body: unknown): McpMessage {
  if (Array.isArray(body)) throw new JsonRpcError(JSON_RPC_ERRORS.invalidRequest, 'JSON-RPC batches are not supported by MCP');
  if (!isObject(body) || body.jsonrpc !== '2.0') throw new JsonRpcError(JSON_RPC_ERRORS.invalidRequest, 'not a JSON-RPC 2.0 message');
  const id = body.id;
  if (id !== undefined && !validId(id)) throw new JsonRpcError(JSON_RPC_ERRORS.invalidRequest, 'id must be a string or a (safe) integer, never null');
  if (body.params !== undefined && !isObject(body.params)) throw new JsonRpcError(JSON_RPC_ERRORS.invalidRequest, 'params must be an object', validId(id) ? id : null);

  if (typeof body.method === 'string') {
    if (body.method.length === 0) throw new JsonRpcError(JSON_RPC_ERRORS.invalidRequest, 'method must not be empty', validId(id) ? id : null);
    const imitated = imitatedMethod(body.method);
    if (imitated !== undefined) {
      throw new JsonRpcError(JSON_RPC_ERRORS.invalidRequest, `method ${JSON.stringify(body.method.slice(0, 100))} is not spelled as the MCP method ${imitated}`, validId(id) ? id : null, 400, 'method_spelling');
    }
    if (id === undefined && !body.method.startsWith(NOTIFICATION_PREFIX)) {
      throw new JsonRpcError(JSON_RPC_ERRORS.invalidRequest, `${body.method} without an id: only notifications/* may be sent as notifications`);
    }
    const params = body.params as Record<string, unknown> | undefined;
    const message: McpMessage = { kind: validId(id) ? 'request' : 'notification', method: body.method, params };
    if (validId(id)) message.id = id;
    if (body.method === 'tools/call') {
      if (!params || typeof params.name !== 'string' || params.name === '') {
        throw new JsonRpcError(JSON_RPC_ERRORS.invalidParams, 'tools/call needs params.name', message.id ?? null);
      }
      if (params.arguments !== undefined && !isObject(params.arguments)) {
        throw new JsonRpcError(JSON_RPC_ERRORS.invalidParams, 'tools/call arguments must be an object', message.id ?? null);
      }
      message.toolName = params.name;
      message.arguments = (params.arguments as Record<string, unknown> | undefined) ?? {};
    }
    return message;
  }
  if (body.method !== undefined) throw new JsonRpcError(JSON_RPC_ERRORS.invalidRequest, 'method must be a string', validId(id) ? id : null);
  // A response (to a server request: sampling, elicitation): exactly one of result and error.
  if (!validId(id)) throw new JsonRpcError(JSON_RPC_ERRORS.invalidRequest, 'a response needs an id');
  if (('result' in body) === ('error' in body)) throw new JsonRpcError(JSON_RPC_ERRORS.invalidRequest, 'a response has exactly one of result and error', id);
  return { kind: 'response', id };
}

/** The `Mcp-Name` value the body implies, if the method is one that names a target. */
export function expectedMcpName(message: McpMessage): string | undefined {
  const param = message.method ? NAME_PARAMS[message.method] : undefined;
  const value = param ? message.params?.[param] : undefined;
  return typeof value === 'string' ? value : undefined;
}

/** Whether a protocol version string is at or after the stateless revision (dates compare as text). */
export function usesStandardHeaders(protocolVersion: string | undefined): boolean {
  return protocolVersion !== undefined && /^\d{4}-\d{2}-\d{2}$/.test(protocolVersion) && protocolVersion >= PROTOCOL_STATELESS;
}

/**
 * From 2026-07-28 (SEP-2243), a POST carries `Mcp-Method` (always, for requests and notifications)
 * and `Mcp-Name` (for the methods that name a target), and they must equal what the body says:
 * intermediaries route, limit and authorize on the headers while the server executes the body, so
 * a disagreement is a confused-deputy attempt. Missing or different → -32020. Earlier revisions
 * do not define the headers; there, ones that are sent must still agree.
 */
export function checkStandardHeaders(message: McpMessage, headers: { method?: string; name?: string }, protocolVersion: string | undefined): void {
  if (message.kind === 'response') return;
  const required = usesStandardHeaders(protocolVersion);
  const fail = (why: string) => {
    throw new JsonRpcError(JSON_RPC_ERRORS.headerMismatch, why, message.id ?? null);
  };
  if (headers.method === undefined) {
    if (required) fail('the Mcp-Method header is required');
  } else if (headers.method !== message.method) {
    fail(`Mcp-Method header ${JSON.stringify(headers.method)} does not match the body's method ${JSON.stringify(message.method)}`);
  }
  const expected = expectedMcpName(message);
  if (expected === undefined) {
    if (headers.name !== undefined && message.method && NAME_PARAMS[message.method]) fail('Mcp-Name header without a name in the body');
    return;
  }
  if (headers.name === undefined) {
    if (required) fail('the Mcp-Name header is required for this method');
  } else if (headers.name !== expected) {
    fail(`Mcp-Name header ${JSON.stringify(headers.name)} does not match the body ${JSON.stringify(expected)}`);
  }
}
