import { z } from 'zod';
import { AdminError } from './errors.ts';

/** `?limit=&cursor=` of every list: at most 200 items a page, 50 by default. */
export const pageInput = {
  limit: z.coerce.number().int().min(1).max(200).default(50).describe('Items per page (1–200).'),
  cursor: z.string().max(500).optional().describe('The next_cursor of the previous page.'),
};

export const page = <T extends z.ZodType>(item: T) =>
  z.strictObject({ items: z.array(item), next_cursor: z.string().nullable().describe('Pass it as cursor for the next page; null on the last.') });

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export const encodeCursor = (key: string) => Buffer.from(key, 'utf8').toString('base64url');

export function decodeCursor(cursor: string): string {
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!key || encodeCursor(key) !== cursor) throw new AdminError('invalid_request', 'the cursor is not one this server gave');
  return key;
}

/** One page of a list ordered by `key` (unique): the items after the cursor's key. */
export function paginate<T>(items: T[], key: (item: T) => string, input: { limit: number; cursor?: string }): Page<T> {
  const sorted = [...items].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  const after = input.cursor === undefined ? undefined : decodeCursor(input.cursor);
  const rest = after === undefined ? sorted : sorted.filter((item) => key(item) > after);
  const taken = rest.slice(0, input.limit);
  return { items: taken, next_cursor: rest.length > input.limit ? encodeCursor(key(taken[taken.length - 1]!)) : null };
}
