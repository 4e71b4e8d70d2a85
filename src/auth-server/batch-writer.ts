import type { Logger } from 'pino';

/**
 * Buffers records and writes them in batches: one insert per batch instead of one per request
 * keeps the token endpoint fast. Nothing is dropped: a failed write is retried with the next
 * batch, and `flush()` / `close()` write what is left.
 */
export class BatchWriter<T> {
  private buffer: T[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly write: (items: T[]) => Promise<void>,
    private readonly log: Logger,
    private readonly options: { name: string; flushMs?: number; batchSize?: number },
  ) {}

  add(item: T): void {
    this.buffer.push(item);
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
        await this.write(batch);
      } catch (error) {
        this.buffer = [...batch, ...this.buffer];
        this.log.error({ err: error, pending: this.buffer.length }, `${this.options.name} write failed; will retry`);
        // After close() nothing retries: a database that is down must not keep the process alive.
        if (!this.timer && !this.closed) this.timer = setTimeout(() => void this.flush(), 1000);
      }
    });
    return this.writing;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
    if (this.buffer.length > 0) this.log.error({ lost: this.buffer.length }, `${this.options.name}: records not written before closing`);
  }
}
