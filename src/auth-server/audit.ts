import type { Logger } from 'pino';
import type { AuditEvent, AuditStore } from '../store/types.ts';

/**
 * Audit records are buffered and written in batches: one insert per batch instead of per request
 * keeps the token endpoint fast. Nothing is dropped: a failed write is retried with the next batch,
 * and `close()` flushes what is left.
 */
export class AuditLog {
  private buffer: AuditEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: AuditStore,
    private readonly log: Logger,
    private readonly options: { flushMs?: number; batchSize?: number } = {},
  ) {}

  record(event: AuditEvent): void {
    this.buffer.push(event);
    if (this.buffer.length >= (this.options.batchSize ?? 500)) {
      void this.flush();
    } else if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.options.flushMs ?? 100);
    }
  }

  /** Writes everything buffered so far; resolves when it is stored. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.writing = this.writing.then(async () => {
      const batch = this.buffer;
      if (batch.length === 0) return;
      this.buffer = [];
      try {
        await this.store.append(batch);
      } catch (error) {
        this.buffer = [...batch, ...this.buffer];
        this.log.error({ err: error, pending: this.buffer.length }, 'audit write failed; will retry');
        if (!this.timer) this.timer = setTimeout(() => void this.flush(), 1000);
      }
    });
    return this.writing;
  }

  async close(): Promise<void> {
    await this.flush();
  }
}
