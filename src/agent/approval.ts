// Calls that need the person's approval first (issue 14, "transactional authorization"): the three
// ways an MCP server can say so, and the AS's transaction status the agent polls meanwhile.
import { parseChallenge } from './discovery.ts';
import { AgentError, reach } from './errors.ts';

/** MCP 2025-11-25, basic/utilities "URL elicitation required": JSON-RPC error -32042. */
export const URL_ELICITATION_REQUIRED = -32042;

/**
 * How the MCP server asked: `url-elicitation` (MCP 2025-11-25, error -32042), `input-required`
 * (MCP 2026-07-28, a result `resultType: "input_required"` carrying an `elicitation/create` in URL
 * mode), or `http-403` (RFC 6750 style: `WWW-Authenticate: Bearer error="insufficient_authorization",
 * approval_uri="…"`, for clients that know neither).
 */
export type ApprovalForm = 'url-elicitation' | 'input-required' | 'http-403';

/** One call waiting for the person's approval: what to show them, and what the retry needs. */
export interface ApprovalRequest {
  /** The tool called, and its arguments (what the retry sends again). */
  tool: string;
  arguments: Record<string, unknown>;
  /** The AS's transaction id (the elicitation id, or the last path segment of `/approve/{id}`). */
  transactionId: string;
  /** The approval page at the AS, on the issuer's origin (checked). */
  url: string;
  /**
   * What is to be approved ("Transfer 250.00 EUR to bob"): the AS's summary of the transaction,
   * else the MCP server's message.
   */
  message?: string;
  form: ApprovalForm;
  /** The AS's list of the person's pending approvals (`<issuer>/approvals`): approving there needs no link. */
  approvalsPage: string;
  /** When the approval lapses (epoch seconds), as the AS says. */
  expiresAt?: number;
  /** 2026-07-28: the opaque state the retry echoes, and the key its `inputResponses` answers. */
  requestState?: string;
  inputKey?: string;
}

/** A transaction as `GET <issuer>/transactions/{id}` shows it to the person's token. */
export interface TransactionStatus {
  id: string;
  status: 'pending' | 'approved' | 'denied' | 'used' | 'expired';
  summary?: string;
  tool?: string;
  resource?: string;
  expires_at?: number;
  decided_at?: number;
}

/** What the agent is told while it waits: the status, and the seconds left before the approval lapses. */
export interface ApprovalProgress {
  transactionId: string;
  status: TransactionStatus['status'];
  secondsLeft?: number;
}

/** A call that needs approval, when nobody waits for it (no `onApproval`, or it answered `false`). */
export class ApprovalRequiredError extends AgentError {
  override name = 'ApprovalRequiredError';
  constructor(readonly request: ApprovalRequest) {
    super(
      'approval_required',
      `the call to ${request.tool} needs your approval${request.message ? ` (${request.message})` : ''}: open ${request.url}, approve, then make the same call again`,
    );
  }
}

/** What an MCP server said, before the agent checked it: the URL, the id if named, a message. */
export interface ApprovalAsk {
  form: ApprovalForm;
  url: string;
  elicitationId?: string;
  message?: string;
  requestState?: string;
  inputKey?: string;
}

const text = (value: unknown) => (typeof value === 'string' && value !== '' ? value : undefined);

interface UrlElicitation {
  mode?: unknown;
  url?: unknown;
  elicitationId?: unknown;
  message?: unknown;
}

/**
 * An MCP 2025-11-25 -32042 error, as the MCP SDK client throws it (`UrlElicitationRequiredError`,
 * a McpError with `code` and `data`): its first URL elicitation.
 */
export function askOfError(error: unknown): ApprovalAsk | undefined {
  const { code, data } = (error ?? {}) as { code?: unknown; data?: { elicitations?: unknown } };
  if (code !== URL_ELICITATION_REQUIRED || !Array.isArray(data?.elicitations)) return undefined;
  const first = (data.elicitations as UrlElicitation[]).find((item) => item?.mode === 'url' && text(item.url));
  if (!first) return undefined;
  return { form: 'url-elicitation', url: String(first.url), elicitationId: text(first.elicitationId), message: text(first.message) };
}

/**
 * An MCP 2026-07-28 `input_required` result whose input request is a URL-mode `elicitation/create`.
 * Another kind of input (a form, sampling, roots) is not the agent's to give: a protocol error.
 */
export function askOfResult(result: unknown): ApprovalAsk | undefined {
  const { resultType, inputRequests, requestState } = (result ?? {}) as { resultType?: unknown; inputRequests?: unknown; requestState?: unknown };
  if (resultType !== 'input_required') return undefined;
  const entries = Object.entries(inputRequests && typeof inputRequests === 'object' ? inputRequests : {}) as [string, { method?: unknown; params?: UrlElicitation }][];
  const found = entries.find(([, request]) => request?.method === 'elicitation/create' && request.params?.mode === 'url' && text(request.params.url));
  if (!found || entries.length !== 1) {
    throw new AgentError('protocol', `the MCP server asks for input the agent cannot give (${entries.map(([, request]) => String(request?.method)).join(', ') || 'nothing named'})`);
  }
  const [inputKey, { params }] = found;
  return { form: 'input-required', url: String(params!.url), elicitationId: text(params!.elicitationId), message: text(params!.message), requestState: text(requestState), inputKey };
}

/** A 403 whose challenge is `insufficient_authorization` with an `approval_uri`. */
export function askOfResponse(response: Response): ApprovalAsk | undefined {
  if (response.status !== 403) return undefined;
  const challenge = parseChallenge(response.headers.get('www-authenticate'));
  if (challenge.error !== 'insufficient_authorization' || !challenge.approval_uri) return undefined;
  return { form: 'http-403', url: challenge.approval_uri };
}

// The AS's ids are 128-bit base64url; anything else is not put into a URL path.
const TRANSACTION_ID = /^[A-Za-z0-9_-]{8,128}$/;

/**
 * Checks what the MCP server asked against the issuer the agent discovered: the page must be the
 * AS's own approval page, exactly `<issuer>/approve/{id}` with no query (the person re-enters a
 * password there, so a link elsewhere — or to another page of the AS, such as an authorization
 * request for someone else's client — would be phishing), and the transaction id well formed. A URL
 * elicitation names its id: the page must be that transaction's, as the agent polls that id.
 */
export function checkAsk(ask: ApprovalAsk, issuer: string): { transactionId: string; url: string } {
  let url: URL;
  try {
    url = new URL(ask.url);
  } catch {
    throw new AgentError('protocol', 'the MCP server asks for an approval at a URL that is not one');
  }
  if (url.origin !== new URL(issuer).origin) {
    throw new AgentError('protocol', `the MCP server asks you to approve at ${url.origin}, which is not your authorization server ${issuer}: not followed`);
  }
  const page = `${new URL(issuer).pathname.replace(/\/+$/, '')}/approve/`;
  const pathId = url.pathname.startsWith(page) ? url.pathname.slice(page.length) : '';
  if (!TRANSACTION_ID.test(pathId) || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new AgentError('protocol', `the MCP server asks you to approve at ${url.origin}${url.pathname}, which is not an approval page of your authorization server (${page}{id}, no query): not followed`);
  }
  if (ask.elicitationId !== undefined && ask.elicitationId !== pathId) {
    throw new AgentError('protocol', `the MCP server names the transaction ${ask.elicitationId.slice(0, 128)} but links the approval page of ${pathId}: not followed`);
  }
  return { transactionId: pathId, url: url.href };
}

const STATUSES = new Set<TransactionStatus['status']>(['pending', 'approved', 'denied', 'used', 'expired']);

/**
 * `GET <issuer>/transactions/{id}` with the person's token for the MCP server (the AS shows a
 * transaction to a token of its subject and client). 404: unknown, or not this sign-in's.
 */
export async function fetchTransaction(issuer: string, id: string, token: string): Promise<TransactionStatus> {
  const url = `${issuer.replace(/\/$/, '')}/transactions/${encodeURIComponent(id)}`;
  const response = await reach(url, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } }, 'the authorization server', 10_000);
  const body = (await response.json().catch(() => ({}))) as Partial<TransactionStatus>;
  if (response.status === 404) throw new AgentError('protocol', `the authorization server knows no transaction ${id} for your sign-in`);
  if (!response.ok || !STATUSES.has(body.status as TransactionStatus['status'])) {
    throw new AgentError('protocol', `the authorization server answered ${response.status} for the transaction ${id}`);
  }
  return body as TransactionStatus;
}

/** The error for a transaction that ended without approval. */
export function notApproved(transaction: TransactionStatus, tool: string): AgentError {
  switch (transaction.status) {
    case 'denied':
      return new AgentError('approval_denied', `you denied the call to ${tool}${transaction.summary ? ` (${transaction.summary})` : ''}: not made`);
    case 'used':
      return new AgentError('approval_expired', `the approval of ${transaction.id} was already used by another call: make the call again to ask anew`);
    default:
      return new AgentError('approval_expired', `the approval for ${tool} expired before it was given: make the call again to ask anew`);
  }
}

/** Resolves after `ms`, or rejects with a `cancelled` AgentError when `signal` aborts. */
export function pause(ms: number, signal: AbortSignal | undefined, why: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AgentError('cancelled', why()));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', stop);
      resolve();
    }, ms);
    const stop = () => {
      clearTimeout(timer);
      reject(new AgentError('cancelled', why()));
    };
    signal?.addEventListener('abort', stop, { once: true });
  });
}

/** What an MCP server asked, checked against the issuer the agent discovered. */
export function approvalRequestOf(ask: ApprovalAsk, call: { name: string; arguments: Record<string, unknown> }, issuer: string): ApprovalRequest {
  const { transactionId, url } = checkAsk(ask, issuer);
  return {
    tool: call.name,
    arguments: call.arguments,
    transactionId,
    url,
    message: ask.message,
    form: ask.form,
    approvalsPage: `${issuer.replace(/\/$/, '')}/approvals`,
    requestState: ask.requestState,
    inputKey: ask.inputKey,
  };
}

/**
 * Waits for the person's decision: resolves once the AS says `approved`, throws on anything else.
 * The first look at the transaction comes before the person is told: it must exist at the AS for
 * this sign-in (a made-up link is never shown), and its summary is the AS's own words.
 */
export async function waitForApproval(
  request: ApprovalRequest,
  how: {
    issuer: string;
    /** The token to poll with (the call's, or a fresh one of the same sign-in once it expired). */
    token: () => Promise<string>;
    onApproval?: (request: ApprovalRequest) => unknown;
    onProgress?: (progress: ApprovalProgress) => void;
    intervalMs: number;
    signal?: AbortSignal;
  },
): Promise<void> {
  const { issuer } = how;
  let failures = 0;
  const look = async (): Promise<TransactionStatus | undefined> => {
    try {
      const found = await fetchTransaction(issuer, request.transactionId, await how.token());
      failures = 0;
      return found;
    } catch (error) {
      // A blip on the network is not worth giving up a pending approval; three in a row are.
      if (error instanceof AgentError && error.kind === 'unreachable' && ++failures < 3) return undefined;
      throw error;
    }
  };
  let transaction = await look();
  if (!transaction) throw new AgentError('unreachable', `cannot reach the authorization server ${issuer} to follow the approval`);
  request.message = transaction.summary ?? request.message;
  request.expiresAt = transaction.expires_at;
  if (transaction.status === 'approved') return;
  if (transaction.status !== 'pending') throw notApproved(transaction, request.tool);
  if (!how.onApproval || (await how.onApproval(request)) === false) throw new ApprovalRequiredError(request);
  // The AS never lets a transaction live past 900 s: the cap when it names no expiry.
  const deadline = (transaction.expires_at ?? Math.floor(Date.now() / 1000) + 900) * 1000;
  const until = clockTime(deadline);
  for (;;) {
    const left = deadline - Date.now();
    how.onProgress?.({ transactionId: request.transactionId, status: transaction.status, secondsLeft: Math.max(0, Math.ceil(left / 1000)) });
    if (left <= 0) throw notApproved({ ...transaction, status: 'expired' }, request.tool);
    await pause(Math.min(how.intervalMs, left), how.signal, () => `stopped waiting for the approval of ${request.tool}; it stays open until ${until}: once approved, make the same call again`);
    transaction = (await look()) ?? transaction;
    if (transaction.status === 'approved') {
      how.onProgress?.({ transactionId: request.transactionId, status: 'approved' });
      return;
    }
    if (transaction.status !== 'pending') throw notApproved(transaction, request.tool);
  }
}

/** A time of day a person can read anywhere: local time with its zone ("4:30:15 AM UTC"). */
export const clockTime = (ms: number) => new Date(ms).toLocaleTimeString(undefined, { timeZoneName: 'short' });
