/**
 * The `GatewayState` objects of the kinds `revocations:`, `audit:`, `approval:` (issue 16) and
 * `dpop:` (issue 17, durable-dpop.ts): the
 * class hands their commands and alarms here. An object of one of these kinds stores its kind under
 * `kind`, so that its alarm reaches its own handler (the rate limit and session objects store none).
 */
import { approvalAlarm, approvalCommand, type ApprovalCommand } from './durable-approvals.ts';
import { dpopAlarm, dpopCommand, type DpopCommand } from './durable-dpop.ts';
import { AuditShardObject, type AuditCommand, type ListingStorage } from './durable-audit.ts';
import { RevocationFeedObject, type RevocationsCommand } from './durable-revocations.ts';
import type { DurableStorage } from './durable-state.ts';

export class StateKinds {
  private feed: RevocationFeedObject | undefined;
  private shard: AuditShardObject | undefined;

  constructor(
    private readonly storage: DurableStorage,
    private readonly env: Record<string, unknown>,
  ) {}

  private revocations(): RevocationFeedObject {
    return (this.feed ??= new RevocationFeedObject(this.storage as ListingStorage, this.env));
  }

  private audit(): AuditShardObject {
    return (this.shard ??= new AuditShardObject(this.storage as ListingStorage, this.env));
  }

  /** The answer to a command of these kinds, or undefined when the command is another kind's. */
  fetch(command: { op?: unknown }): Promise<Response> | undefined {
    if (command.op === 'revocations') return this.revocations().read(command as RevocationsCommand);
    if (command.op === 'audit') return this.audit().append(command as AuditCommand);
    if (typeof command.op === 'string' && command.op.startsWith('approval-')) return approvalCommand(this.storage, command as ApprovalCommand);
    if (command.op === 'dpop-claim') return dpopCommand(this.storage, command as DpopCommand);
    return undefined;
  }

  /** Runs the alarm of an object of these kinds; false when the object is another kind's. */
  async alarm(): Promise<boolean> {
    const kind = await this.storage.get<string>('kind');
    if (kind === 'revocations') await this.revocations().alarm();
    else if (kind === 'audit') await this.audit().alarm();
    else if (kind === 'approval') await approvalAlarm(this.storage);
    else if (kind === 'dpop') await dpopAlarm(this.storage);
    else return false;
    return true;
  }
}
