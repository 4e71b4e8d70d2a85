import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { BlockedAddressError, resolvePublicAddress } from './network-guard.ts';

export interface GuardedFetchOptions {
  allowLoopback: boolean;
  maxBytes: number;
  timeoutMs: number;
  /** A form POST instead of a GET (back-channel logout tokens); `accept` says what the answer may be. */
  post?: { form: URLSearchParams; accept?: string };
}

export interface GuardedResponse {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

export class FetchRefused extends Error {
  override name = 'FetchRefused';
  /** Refused before any connection: the host is not a public address (the SSRF guard), so retrying is pointless. */
  blocked = false;
}

/**
 * GET (or form POST) of a URL supplied by a client (metadata documents, JWKS URIs, back-channel
 * logout URIs), with SSRF guards: the host must resolve only to public addresses (loopback when allowed, for development), the connection
 * goes to the checked address, redirects are not followed, the body is capped and the whole
 * exchange has a deadline.
 */
export async function guardedFetch(url: URL, options: GuardedFetchOptions): Promise<GuardedResponse> {
  const pinned = await resolvePublicAddress(url.hostname, { allowLoopback: options.allowLoopback }).catch((error: Error) => {
    const refused = new FetchRefused(error.message);
    refused.blocked = error instanceof BlockedAddressError;
    throw refused;
  });
  const lookup: LookupFunction = (_host, opts, callback) => {
    if ((opts as { all?: boolean }).all) {
      (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [pinned]);
    } else {
      callback(null, pinned.address, pinned.family);
    }
  };
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<GuardedResponse>((resolve, reject) => {
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      reject(error instanceof FetchRefused ? error : new FetchRefused(error.message));
      req.destroy();
    };
    const body = options.post ? Buffer.from(options.post.form.toString()) : undefined;
    const headers = body
      ? { accept: options.post?.accept ?? '*/*', 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(body.length) }
      : { accept: 'application/json' };
    const req = send(url, { method: body ? 'POST' : 'GET', lookup, headers, timeout: options.timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > options.maxBytes) return fail(new FetchRefused(`response larger than ${options.maxBytes} bytes`));
        chunks.push(chunk);
      });
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', fail);
    });
    const deadline = setTimeout(() => fail(new FetchRefused(`no complete response within ${options.timeoutMs} ms`)), options.timeoutMs);
    req.on('timeout', () => fail(new FetchRefused(`no response within ${options.timeoutMs} ms`)));
    req.on('error', fail);
    req.end(body);
  });
}
