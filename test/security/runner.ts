import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { TestAuthServer } from '../helpers/auth-server.ts';
import type { TestGateway } from '../helpers/gateway.ts';

/** What an attack got back: the HTTP status and the error code the client saw (OAuth or JSON-RPC). */
export interface Outcome {
  status: number;
  error: string | number | undefined;
}

/**
 * One attack: the request, and the refusal it must get — the exact HTTP status, the exact error
 * code, and the reason the audit log records for this very request (the client only sees a
 * generic description; the reason is how we know the refusal happened for the right cause).
 */
export interface AttackCase {
  name: string;
  attack: () => Promise<Outcome>;
  status: number;
  error: string | number;
  auditReason: string | RegExp;
  /** Gateway: the audit `rejection`; AS: the audit event `type`. When given, the one refusal of this kind is checked. */
  auditKind?: string;
}

/** Where a case's audit event is found: everything recorded after `mark()`. */
export interface AuditProbe<M = number> {
  mark(): Promise<M>;
  since(mark: M): Promise<{ kind: string; error?: string; reason?: string; raw: Record<string, unknown> }[]>;
}

/** The AS audit log: events after the highest id seen before the attack, refusals only. */
export function asAudit(as: () => TestAuthServer): AuditProbe {
  return {
    async mark() {
      await as().ctx.audit.flush();
      return (await as().store.audit.list({ limit: 1 }))[0]?.id ?? 0;
    },
    async since(mark) {
      await as().ctx.audit.flush();
      const events = await as().store.audit.list({ limit: 200 });
      return events
        .filter((e) => e.id > mark && e.outcome === 'failure')
        .reverse()
        .map((e) => ({ kind: e.type, error: e.error, reason: e.reason, raw: e as unknown as Record<string, unknown> }));
    },
  };
}

/** Several audit logs at once (a case that may reach either of two servers). */
export function combinedAudit(probes: AuditProbe[]): AuditProbe<number[]> {
  return {
    mark: () => Promise.all(probes.map((p) => p.mark())),
    since: async (marks) => (await Promise.all(probes.map((p, i) => p.since(marks[i]!)))).flat(),
  };
}

/** The gateway audit file: lines appended after the attack's mark, refusals only. */
export function gatewayAudit(gateway: () => TestGateway): AuditProbe {
  return {
    async mark() {
      return (await gateway().auditEvents()).length;
    },
    async since(mark) {
      const events = (await gateway().auditEvents()).slice(mark);
      return events
        .filter((e) => e.decision !== 'allow')
        .map((e) => ({ kind: String(e.rejection), error: e.rejection as string | undefined, reason: e.reason as string | undefined, raw: e }));
    },
  };
}

/**
 * Registers one test per case. Each asserts the status, the error code, and that exactly one
 * refusal was audited for the request, with the expected reason. Cases run in order, one at a time.
 */
export function runCases<M>(cases: AttackCase[], probe: AuditProbe<M>): void {
  for (const c of cases) {
    it(`${c.status} ${c.error}: ${c.name}`, async () => {
      const mark = await probe.mark();
      const outcome = await c.attack();
      const events = await probe.since(mark);
      if (process.env.SECURITY_DISCOVER) console.log('DISCOVER', JSON.stringify([c.name, outcome.status, outcome.error, events.map((e) => [e.kind, e.error, e.reason])]));
      const detail = `got ${outcome.status} ${String(outcome.error)}; audit ${JSON.stringify(events.map((e) => [e.kind, e.error, e.reason]))}`;
      assert.equal(outcome.status, c.status, detail);
      assert.equal(outcome.error, c.error, detail);
      // With auditKind, refusals of other kinds (a setup step's, e.g. a denied consent) are not counted.
      const refusals = events.filter((e) => (e.error !== undefined || e.reason !== undefined) && (c.auditKind === undefined || e.kind === c.auditKind));
      assert.equal(refusals.length, 1, `exactly one refusal audited for the request: ${detail}`);
      const [event] = refusals;
      if (typeof c.auditReason === 'string') assert.equal(event!.reason, c.auditReason, detail);
      else assert.match(event!.reason ?? '', c.auditReason, detail);
      if (typeof c.error === 'string' && probe !== undefined && event!.raw.outcome !== undefined) assert.equal(event!.error, c.error, detail);
    });
  }
}

/** An OAuth JSON error response. */
export async function oauth(res: Response): Promise<Outcome> {
  const text = await res.text();
  let error: string | undefined;
  try {
    error = (JSON.parse(text) as { error?: string }).error;
  } catch {
    error = undefined;
  }
  return { status: res.status, error };
}

/**
 * An authorization error sent back to the client (303 to its redirect URI with `error`), or shown
 * to the user: then the page's status, and no redirect. `expectedRedirect` is where a redirect may go.
 */
export function redirected(expectedRedirect: string) {
  return async (res: Response): Promise<Outcome> => {
    const location = res.headers.get('location');
    if (res.status !== 303 || !location) return oauth(res);
    const url = new URL(location, 'http://as.invalid');
    assert.equal(url.origin + url.pathname, expectedRedirect, 'the error goes only to the registered redirect URI');
    return { status: 303, error: url.searchParams.get('error') ?? undefined };
  };
}

/** A gateway answer: the HTTP status and the JSON-RPC error code. */
export function rpc(res: { status: number; json?: Record<string, unknown> }): Outcome {
  return { status: res.status, error: (res.json?.error as { code?: number } | undefined)?.code };
}

/** The security suite configures servers as shipped: no client_credentials for self-registered clients. */
export const AS_DEFAULTS = { registration: { client_credentials: false } } as const;
