/**
 * The errors of admin operations. Front ends turn them into their own shape: the admin API into
 * `{error, error_description}` with `status`; the MCP server (next) into a tool error. `reason` is
 * for the audit log only.
 */
export type AdminErrorCode = 'invalid_request' | 'insufficient_scope' | 'not_found' | 'conflict' | 'precondition_failed' | 'precondition_required';

const STATUS: Record<AdminErrorCode, number> = {
  invalid_request: 400,
  insufficient_scope: 403,
  not_found: 404,
  conflict: 409,
  precondition_failed: 412,
  precondition_required: 428,
};

export class AdminError extends Error {
  readonly code: AdminErrorCode;
  readonly status: number;
  readonly reason: string | undefined;
  /** insufficient_scope: the scopes any one of which would do. */
  readonly scopes: string[];

  constructor(code: AdminErrorCode, description: string, options: { reason?: string; scopes?: string[] } = {}) {
    super(description);
    this.name = 'AdminError';
    this.code = code;
    this.status = STATUS[code];
    this.reason = options.reason;
    this.scopes = options.scopes ?? [];
  }

  toResponseObject(): { error: AdminErrorCode; error_description: string } {
    return { error: this.code, error_description: this.message };
  }
}

export const notFound = (what: string) => new AdminError('not_found', `no such ${what}`);

/** An item of the configuration file: the file is its source of truth (docs/admin.md). */
export const fromConfig = (what: string, change = 'change it there') =>
  new AdminError('conflict', `this ${what} comes from the configuration file; ${change}`, { reason: `${what} is defined in the configuration file` });
