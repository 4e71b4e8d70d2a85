/**
 * Errors a person can act on: one line that says what happened and what to do, and a distinct
 * exit code per kind for scripts (`mandate agent …`).
 */
export const AGENT_EXIT_CODES = {
  usage: 2,
  unreachable: 3,
  consent_denied: 4,
  agent_disabled: 5,
  scope_refused: 6,
  not_signed_in: 7,
  tool_failed: 8,
  protocol: 9,
  refused: 10,
  /** The person denied the approval a call needed (issue 14). */
  approval_denied: 11,
  /** The approval lapsed (or was used by another call) before the call could be made. */
  approval_expired: 12,
  /** The call needs an approval and nobody waited for it (`--no-wait`): approve, then call again. */
  approval_required: 13,
  /** Stopped while waiting (Ctrl-C): 128 + SIGINT, as shells report it. */
  cancelled: 130,
  /** A tool the MCP server does not offer: a mistake in the command, like a usage error. */
  unknown_tool: 2,
} as const;

export type AgentErrorKind = keyof typeof AGENT_EXIT_CODES;

export class AgentError extends Error {
  override name = 'AgentError';
  constructor(
    readonly kind: AgentErrorKind,
    message: string,
    /** The OAuth error the AS answered with, when this came from one. */
    readonly oauthError?: string,
    /** Its `error_description`. */
    readonly oauthDescription?: string,
    /** The HTTP status of that answer (RFC 6749 §5.2: 400, or 401 for `invalid_client`). */
    readonly status?: number,
  ) {
    super(message);
  }

  get exitCode(): number {
    return AGENT_EXIT_CODES[this.kind];
  }
}

/** Turns a token endpoint's OAuth error into the kind of problem it is for the person at the terminal. */
export function fromOAuthError(error: string | undefined, description: string | undefined, what: string, status?: number): AgentError {
  const detail = description ? `: ${description}` : '';
  const kind = (): [AgentErrorKind, string] => {
    switch (error) {
      case 'access_denied':
        return ['consent_denied', `${what} was denied${detail}`];
      case 'invalid_client':
      case 'unauthorized_client':
        return ['agent_disabled', `the authorization server refused the agent's credentials${detail} — is the agent disabled or expired, or AGENT_SECRET wrong?`];
      case 'invalid_scope':
        return ['scope_refused', `the scope was refused${detail}`];
      case 'invalid_grant':
        return ['not_signed_in', `${what} failed${detail} — sign in again with \`mandate agent login\``];
      default:
        return ['protocol', `${what} failed: ${error ?? 'unknown error'}${detail}`];
    }
  };
  const [which, message] = kind();
  return new AgentError(which, message, error, description, status);
}

/** The short reason a request could not be sent: ECONNREFUSED, ENOTFOUND, a timeout… */
export function networkReason(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string; errors?: { code?: string }[] } }).cause;
  return cause?.code ?? cause?.errors?.[0]?.code ?? cause?.message ?? (error as Error).message;
}

/**
 * `fetch` with a time limit, where a request that cannot be sent (refused, unresolved, timed out)
 * is the AgentError a person can act on: "cannot reach <what> at <url> (ECONNREFUSED) — is it running?".
 */
export async function reach(url: string, init: RequestInit, what: string, timeoutMs = 15_000): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    throw new AgentError('unreachable', `cannot reach ${what} at ${url} (${networkReason(error)}) — is it running?`);
  }
}
