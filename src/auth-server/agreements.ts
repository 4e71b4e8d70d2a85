import type { AgreementConfig } from '../config/schema.ts';
import type { ServerContext } from './context.ts';

const DAY = 86_400;

/**
 * The first agreement of the client's authentication policy that this user must (re)accept: never
 * accepted, accepted in an older version, or accepted longer ago than its reconsent interval.
 */
export async function pendingAgreement(ctx: ServerContext, policyName: string | undefined, sub: string): Promise<AgreementConfig | undefined> {
  const policy = ctx.authenticationPolicy(policyName);
  if (!policy) return undefined;
  for (const step of policy.steps) {
    if (step === 'login') continue;
    const agreement = ctx.agreement(step.agreement)!;
    const accepted = await ctx.store.agreements.find(sub, agreement.id);
    const current = accepted && accepted.version >= agreement.version;
    const fresh = accepted && (agreement.reconsent_days === undefined || accepted.acceptedAt + agreement.reconsent_days * DAY > ctx.now());
    if (!current || !fresh) return agreement;
  }
  return undefined;
}
