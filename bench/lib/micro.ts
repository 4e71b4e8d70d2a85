/**
 * In-process micro-benchmarks of what Mandate's token endpoint does per request, no HTTP: ES256
 * JWT signing through jose (`CompactSign`, WebCrypto underneath, as src/core/jwt.ts does) against
 * `node:crypto` `sign()`, the client-secret SHA-256 through WebCrypto against `createHash`, and
 * the token id (`jti`) from `randomToken` against `crypto.randomUUID()`.
 * Reports ops/s and process CPU µs/op (WebCrypto and async `crypto.sign` run on libuv's thread
 * pool, so their CPU is not all on the main thread: µs/op is the honest cost).
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { CompactSign, compactVerify, importJWK, type JWK } from 'jose';
import { randomToken } from '../../src/core/encoding.ts';
import { fmtFixed, fmtInt, table } from './stats.ts';

interface MicroResult {
  name: string;
  ops: number;
  seconds: number;
  cpuMicros: number;
}

const cpuNow = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};

/** Calls `fn` (synchronous) in batches until `seconds` have passed. */
function runSync(name: string, seconds: number, fn: () => unknown): MicroResult {
  const run = (ms: number) => {
    const cpu0 = cpuNow();
    const t0 = performance.now();
    let ops = 0;
    while (performance.now() - t0 < ms) {
      for (let i = 0; i < 50; i++) fn();
      ops += 50;
    }
    return { name, ops, seconds: (performance.now() - t0) / 1000, cpuMicros: cpuNow() - cpu0 };
  };
  run(Math.min(300, seconds * 250)); // warm-up
  return run(seconds * 1000);
}

/** Runs `concurrency` loops that each await `fn` until `seconds` have passed. */
async function runAsync(name: string, seconds: number, concurrency: number, fn: () => Promise<unknown>): Promise<MicroResult> {
  const run = async (ms: number) => {
    const cpu0 = cpuNow();
    const t0 = performance.now();
    let ops = 0;
    const loop = async () => {
      while (performance.now() - t0 < ms) {
        await fn();
        ops++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, loop));
    return { name, ops, seconds: (performance.now() - t0) / 1000, cpuMicros: cpuNow() - cpu0 };
  };
  await run(Math.min(300, seconds * 250)); // warm-up
  return run(seconds * 1000);
}

const b64url = (data: string | Buffer) => Buffer.from(data).toString('base64url');

export async function runMicroBenchmarks(seconds: number): Promise<string> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' }) as JWK;
  const cryptoKey = (await importJWK({ ...jwk, alg: 'ES256' }, 'ES256')) as CryptoKey;
  const encoder = new TextEncoder();
  const now = Math.floor(Date.now() / 1000);
  // The claims Mandate puts in a client_credentials access token.
  const claims = () => ({
    iss: 'http://127.0.0.1:9000',
    sub: 'bench',
    aud: 'https://api.bench.test',
    exp: now + 900,
    iat: now,
    jti: randomBytes(16).toString('base64url'),
    client_id: 'bench',
    scope: 'api:read',
  });
  const header = { alg: 'ES256', typ: 'at+jwt', kid: 'bench-kid' };
  const headerB64 = b64url(JSON.stringify(header));

  const joseSign = () => new CompactSign(encoder.encode(JSON.stringify(claims()))).setProtectedHeader(header).sign(cryptoKey);
  const nodeSign = (key: KeyObject) => {
    const input = `${headerB64}.${b64url(JSON.stringify(claims()))}`;
    return `${input}.${sign(null, Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
  };
  const nodeSignAsync = (key: KeyObject) =>
    new Promise<string>((resolve, reject) => {
      const input = `${headerB64}.${b64url(JSON.stringify(claims()))}`;
      sign(null, Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }, (error, signature) =>
        error ? reject(error) : resolve(`${input}.${signature.toString('base64url')}`),
      );
    });

  // Both must produce valid ES256 JWS (sign(null) on a P-256 key hashes with SHA-256).
  const publicCryptoKey = (await importJWK({ ...(publicKey.export({ format: 'jwk' }) as JWK), alg: 'ES256' }, 'ES256')) as CryptoKey;
  for (const token of [await joseSign(), nodeSign(privateKey), await nodeSignAsync(privateKey)]) {
    const { protectedHeader } = await compactVerify(token, publicCryptoKey);
    if (protectedHeader.alg !== 'ES256') throw new Error('micro-benchmark: unexpected alg');
  }

  const secret = randomBytes(32).toString('base64url');
  const results: MicroResult[] = [
    await runAsync('ES256 sign, jose CompactSign (WebCrypto), 1 at a time', seconds, 1, joseSign),
    await runAsync('ES256 sign, jose CompactSign (WebCrypto), 32 in flight', seconds, 32, joseSign),
    runSync("ES256 sign, node:crypto sign() sync, dsaEncoding 'ieee-p1363'", seconds, () => nodeSign(privateKey)),
    await runAsync('ES256 sign, node:crypto sign() with callback, 32 in flight', seconds, 32, () => nodeSignAsync(privateKey)),
    await runAsync('SHA-256 of client secret, crypto.subtle.digest, 1 at a time', seconds, 1, () => crypto.subtle.digest('SHA-256', encoder.encode(secret))),
    runSync('SHA-256 of client secret, node:crypto createHash', seconds, () => createHash('sha256').update(secret).digest('base64url')),
    runSync('jti, randomToken(16) of src/core/encoding.ts (getRandomValues + btoa)', seconds, () => randomToken(16)),
    runSync('jti, crypto.randomUUID() (Web Crypto, pooled entropy)', seconds, () => crypto.randomUUID()),
  ];

  const rows = results.map((r) => [r.name, fmtInt(r.ops / r.seconds), fmtFixed(r.cpuMicros / r.ops, 1)]);
  const jose1 = results[0]!;
  const node = results[2]!;
  const ratio = node.ops / node.seconds / (jose1.ops / jose1.seconds);
  const cpuRatio = jose1.cpuMicros / jose1.ops / (node.cpuMicros / node.ops);
  return [
    `Micro-benchmarks (single process, no HTTP, ${seconds} s each; CPU is the whole process, thread pool included)`,
    '',
    table(['operation', 'ops/s', 'CPU µs/op'], rows),
    '',
    `node:crypto sync vs jose (1 at a time, as the token endpoint awaits it): ${fmtFixed(ratio)}× the ops/s, ${fmtFixed(cpuRatio)}× less CPU per signature.`,
  ].join('\n');
}
