import type { Context } from 'hono';
import { OAuthError } from '../core/errors.ts';

/** Request parameters with OAuth's rule that a parameter appears at most once (RFC 6749 §3.1, §3.2). */
export class Params {
  constructor(private readonly values: Map<string, string[]>) {}

  static fromSearch(search: URLSearchParams): Params {
    const values = new Map<string, string[]>();
    for (const [key, value] of search) {
      const list = values.get(key);
      if (list) list.push(value);
      else values.set(key, [value]);
    }
    return new Params(values);
  }

  /** A single-valued parameter; empty values count as absent (RFC 6749 §3.1). */
  get(name: string): string | undefined {
    const all = this.values.get(name)?.filter((v) => v !== '');
    if (!all || all.length === 0) return undefined;
    if (all.length > 1) throw new OAuthError('invalid_request', `parameter ${name} is repeated`);
    return all[0];
  }

  require(name: string): string {
    const value = this.get(name);
    if (value === undefined) throw new OAuthError('invalid_request', `parameter ${name} is required`);
    return value;
  }

  /** A parameter that may repeat, such as `resource` (RFC 8707 §2). */
  all(name: string): string[] {
    return (this.values.get(name) ?? []).filter((v) => v !== '');
  }

  /** Every name and value, repeats included (a pushed request is stored as these). */
  entries(): [string, string][] {
    return [...this.values].flatMap(([k, list]) => list.map((v): [string, string] => [k, v]));
  }

  toObject(): Record<string, string> {
    return Object.fromEntries([...this.values].map(([k, v]) => [k, v[0] ?? '']));
  }
}

/** Reads an application/x-www-form-urlencoded body; anything else is `invalid_request`. */
export async function formParams(c: Context): Promise<Params> {
  const type = c.req.header('content-type') ?? '';
  if (!type.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    throw new OAuthError('invalid_request', 'the body must be application/x-www-form-urlencoded');
  }
  return Params.fromSearch(new URLSearchParams(await c.req.text()));
}
