import { createHash } from 'node:crypto';
import { revocationChannel, type RevocationChannel } from '../../store/revocation-channel.ts';
import { RevocationList, type RevocationListOptions } from '../revocation-list.ts';

export interface FeedOptions extends RevocationListOptions {
  /** Redis pub/sub channel the AS publishes on; used when the registry has a Redis URL. */
  channel: string;
}

/**
 * One revocation feed per authorization server (endpoint + client + channel), shared by every
 * route that uses it and kept across route reloads: a reload acquires the feeds of its new routes
 * before the old routes release theirs, so a feed in use is never rebuilt (and never goes back to
 * failing closed). With `redisUrl`, each feed also subscribes to pushed events and re-polls on
 * every (re)connect to catch up on what it missed.
 */
export class RevocationFeeds {
  private readonly feeds = new Map<string, { list: RevocationList; channel?: RevocationChannel; users: number }>();

  constructor(private readonly options: { redisUrl?: string; onError?: (error: Error) => void } = {}) {}

  acquire(options: FeedOptions): { list: RevocationList; release(): void } {
    // The credentials and the interval are part of the feed: a reload after a secret rotation gets
    // a feed that polls with the new secret (the old one's polls would be refused from then on).
    const secret = createHash('sha256').update(options.clientSecret).digest('base64url');
    const key = JSON.stringify([typeof options.endpoint === 'string' ? options.endpoint : options.issuer, options.clientId, secret, options.pollMs, options.channel]);
    let feed = this.feeds.get(key);
    if (!feed) {
      const list = new RevocationList({ ...options, onError: this.options.onError ?? options.onError });
      const channel = this.options.redisUrl
        ? revocationChannel({
            url: this.options.redisUrl,
            channel: options.channel,
            onEvent: (event) => list.apply(event),
            onConnect: () => void list.refresh(),
            onError: (error) => this.options.onError?.(error),
            publishes: false,
          })
        : undefined;
      list.start();
      feed = { list, channel, users: 0 };
      this.feeds.set(key, feed);
    }
    feed.users++;
    let released = false;
    const entry = feed;
    return {
      list: entry.list,
      release: () => {
        if (released) return;
        released = true;
        if (--entry.users > 0) return;
        entry.list.stop();
        void entry.channel?.close();
        this.feeds.delete(key);
      },
    };
  }

  async close(): Promise<void> {
    const all = [...this.feeds.values()];
    this.feeds.clear();
    for (const feed of all) feed.list.stop();
    await Promise.all(all.map((feed) => feed.channel?.close()));
  }
}
