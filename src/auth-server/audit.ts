import type { Logger } from 'pino';
import type { AuditEvent, AuditStore } from '../store/types.ts';
import { BatchWriter } from './batch-writer.ts';

/** The audit log: records are written in batches (every 100 ms or 500 records), never dropped. */
export class AuditLog extends BatchWriter<AuditEvent> {
  constructor(store: AuditStore, log: Logger, options: { flushMs?: number; batchSize?: number } = {}) {
    super((events) => store.append(events), log, { name: 'audit', ...options });
  }

  record(event: AuditEvent): void {
    this.add(event);
  }
}
