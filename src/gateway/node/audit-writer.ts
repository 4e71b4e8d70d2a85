import { hash } from 'node:crypto';
import { mkdir, open, rename, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { GatewayAuditEvent } from '../types.ts';

export interface AuditWriterOptions {
  file: string | null;
  maxBytes: number;
  keep: number;
  stdout: boolean;
  /** Events held before callers must wait (backpressure). */
  bufferEvents: number;
  /** Longest a request waits for room before its event is dropped (and counted). */
  maxWaitMs?: number;
  /**
   * Least time between two automatic writes (default 10 ms): events that arrive meanwhile go out
   * together. Each write is a hand-off to libuv's thread pool whose cost (~60 µs of CPU here) does
   * not depend on its size: written one by one, at one request at a time, it cost more than the
   * rest of the audit. `flush()` and `close()` write at once.
   */
  batchMs?: number;
  log: Logger;
  /** Where `stdout: true` writes (process.stdout by default). */
  writeStdout?: (text: string) => void;
  onWritten?: (count: number) => void;
  onDropped?: (count: number) => void;
}

/**
 * One JSONL line per event; the arguments are replaced by their SHA-256, never written. Never
 * throws: an event whose arguments cannot be serialized (the validation filter's depth limit
 * should make that impossible) is still written, with the fields that can be and the reason.
 */
export function auditLine(event: GatewayAuditEvent): string {
  const args = event.arguments;
  if (args !== undefined && event.args_sha256 === undefined) {
    // The common case without a copy of the event: the arguments are hidden from JSON.stringify for
    // the moment (an undefined field is left out) and their hash goes last, as in the copy below.
    try {
      const digest = hash('sha256', JSON.stringify(args));
      event.arguments = undefined;
      let json: string;
      try {
        json = JSON.stringify(event);
      } finally {
        event.arguments = args;
      }
      if (json.endsWith('}') && json.length > 2) return `${json.slice(0, -1)},"args_sha256":"${digest}"}\n`;
    } catch {
      // Written below, with the reason.
    }
  }
  const { arguments: _args, ...rest } = event;
  try {
    // One-shot hash: a Hash object per event costs more than the hashing.
    if (args !== undefined) rest.args_sha256 = hash('sha256', JSON.stringify(args));
    return `${JSON.stringify(rest)}\n`;
  } catch (error) {
    const audit_error = `the event could not be serialized in full: ${(error as Error).message}`;
    try {
      // Usually the arguments were the problem: every other field still goes in.
      return `${JSON.stringify({ ...rest, args_sha256: undefined, audit_error })}\n`;
    } catch {
      const { time, request_id, route, http_method, protocol_version, kind, method, tool, sub, client_id, decision, rejection, reason, status, latency_ms } = event;
      return `${JSON.stringify({ time, request_id, route, http_method, protocol_version, kind, method, tool, sub, client_id, decision, rejection, reason, status, latency_ms, audit_error })}\n`;
    }
  }
}

/**
 * The audit sink: events are appended to a JSONL file (rotated at `maxBytes`, `keep` old files)
 * and/or stdout, in batches — one write per batch, not per request. Nothing is dropped silently:
 * when the buffer is full, requests wait for the writer (backpressure); a request that has
 * waited `maxWaitMs` in vain is refused (503) rather than forwarded unrecorded, and its own
 * event, if the buffer is still over twice full, is dropped, counted and logged.
 */
export class AuditWriter {
  private buffer: string[] = [];
  /**
   * Events recorded and not yet turned into lines. A line is made when the gateway next waits on an
   * upstream ({@link upstreamWaiting}) or at the write, whichever comes first: at one request at a
   * time, making it right after the answer took a CPU the client and the upstream wanted then, and
   * delayed the next request (docs/gateway.md "Performance", seventh round).
   */
  private pending: GatewayAuditEvent[] = [];
  /** At most this many events are kept unmade: more (a stalled write, a burst of refusals that reach no upstream) are made at once, so that memory holds lines, not events with their arguments. */
  private static readonly MAX_PENDING = 64;
  private serializeScheduled = false;
  private readonly serializeScheduledPending = () => {
    this.serializeScheduled = false;
    this.serializePending();
  };
  private waiters: (() => void)[] = [];
  private handle: FileHandle | undefined;
  private size = 0;
  private writing: Promise<void> | undefined;
  private scheduled = false;
  private closed = false;
  /** When (performance.now()) the last write began. */
  private lastWrite = -Infinity;
  private readonly batchMs: number;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly flushScheduled = () => void this.flush();

  constructor(private readonly options: AuditWriterOptions) {
    this.batchMs = options.batchMs ?? 10;
  }

  async open(): Promise<void> {
    if (!this.options.file) return;
    await mkdir(dirname(this.options.file), { recursive: true, mode: 0o700 });
    this.handle = await open(this.options.file, 'a', 0o600);
    this.size = (await stat(this.options.file)).size;
  }

  /**
   * Undefined when there is room; else a promise of whether room came within `maxWaitMs`. On
   * false the request is refused: a call is never forwarded without its event being recordable.
   */
  ready(): Promise<boolean> | undefined {
    if (this.held() < this.options.bufferEvents) return undefined;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(this.held() < this.options.bufferEvents), this.options.maxWaitMs ?? 5_000);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  record(event: GatewayAuditEvent): void {
    if (this.closed || this.held() >= this.options.bufferEvents * 2) {
      this.options.onDropped?.(1);
      this.options.log.error({ request_id: event.request_id }, 'audit event dropped: the audit sink is not keeping up');
      return;
    }
    this.pending.push(event);
    if (this.pending.length >= AuditWriter.MAX_PENDING) this.serializePending();
    if (!this.scheduled) {
      this.scheduled = true;
      // A lone event goes out at once; under load, one write per batchMs carries them all.
      const wait = this.lastWrite + this.batchMs - performance.now();
      if (wait > 0) this.timer = setTimeout(this.flushScheduled, wait);
      else setImmediate(this.flushScheduled);
    }
  }

  /**
   * A hint that the gateway has just sent a request upstream and waits for it: a moment when the
   * events recorded so far can be made into lines without holding up anyone. Made in this loop
   * turn's check phase (`setImmediate`): undici has written the request by then, within its
   * dispatch or from a `setImmediate` of its own queued before this one.
   */
  upstreamWaiting(): void {
    if (this.pending.length === 0 || this.serializeScheduled) return;
    this.serializeScheduled = true;
    setImmediate(this.serializeScheduledPending);
  }

  /** Events held: recorded, as lines or not yet, and not yet handed to a write. */
  private held(): number {
    return this.buffer.length + this.pending.length;
  }

  private serializePending(): void {
    const events = this.pending;
    if (events.length === 0) return;
    this.pending = [];
    for (const event of events) this.buffer.push(auditLine(event));
  }

  /** Writes everything buffered; resolves when it is on disk (well, in the OS). */
  async flush(): Promise<void> {
    this.scheduled = false;
    // An explicit flush (or close) writes what the timer was waiting for: no timer outlives it.
    clearTimeout(this.timer);
    this.timer = undefined;
    this.serializePending();
    while (this.writing) await this.writing;
    this.serializePending();
    if (this.buffer.length === 0) return;
    const lines = this.buffer;
    this.buffer = [];
    const waiters = this.waiters;
    this.waiters = [];
    this.lastWrite = performance.now();
    this.writing = this.write(lines.join(''), lines.length).finally(() => {
      this.writing = undefined;
      for (const wake of waiters) wake();
    });
    await this.writing;
  }

  private async write(text: string, count: number): Promise<void> {
    if (this.options.stdout) (this.options.writeStdout ?? ((line: string) => process.stdout.write(line)))(text);
    if (this.handle) {
      try {
        const bytes = Buffer.from(text);
        if (this.size > 0 && this.size + bytes.byteLength > this.options.maxBytes) await this.rotate();
        await this.handle.write(bytes);
        this.size += bytes.byteLength;
      } catch (error) {
        this.options.onDropped?.(count);
        this.options.log.error({ err: error, events: count }, 'audit events could not be written');
        return;
      }
    }
    this.options.onWritten?.(count);
  }

  /** file → file.1 → … → file.<keep>; the oldest is overwritten. */
  private async rotate(): Promise<void> {
    const file = this.options.file!;
    await this.handle?.close();
    for (let i = this.options.keep - 1; i >= 1; i--) await rename(`${file}.${i}`, `${file}.${i + 1}`).catch(() => undefined);
    await rename(file, `${file}.1`);
    this.handle = await open(file, 'a', 0o600);
    this.size = 0;
  }

  async close(): Promise<void> {
    // Events recorded while a write was going out are written too (a few rounds at most: the
    // servers are closed before the sink).
    for (let round = 0; round < 10 && (round === 0 || this.held() > 0); round++) await this.flush();
    this.closed = true;
    await this.handle?.close();
    this.handle = undefined;
  }
}
