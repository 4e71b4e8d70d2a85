/**
 * The approval section of `npm run bench` (`--only=approval`): what an approval costs at the gateway
 * (issue 14, docs/high-risk-actions.md). One process holds the real authorization server (SQLite in
 * memory), the real gateway and a trivial upstream; calls go one at a time over loopback, so the
 * figures are latencies at one connection, interleaved per round:
 *
 *   plain      `tools/call` of a tool without approval (the gateway's ordinary path)
 *   held       the first call of a tool that needs approval: the gateway creates the transaction at
 *              the AS (POST /transactions) and answers -32042; nothing is forwarded
 *   approved   the same call retried once the person approved (decided in the store, outside the
 *              timing): the gateway spends the approval at the AS (POST /transactions/{id}/use)
 *              and forwards
 *   in token   the same call with a token carrying the approval (RFC 9396 authorization_details,
 *              exchanged outside the timing): claimed once in the gateway's store, recorded at the
 *              AS (/use), forwarded
 *
 * "added" is the median of each minus the median of plain, in the same run.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { AGENT, BANK, signIn, startTransactionServer, SECRETS } from '../test/transactions/helpers.ts';
import { basic } from '../test/helpers/auth-server.ts';
import { exchange } from '../test/helpers/delegation-server.ts';
import { mcpPost, startScriptedUpstream, startTestGateway, toolCall } from '../test/helpers/gateway.ts';
import { fmtFixed, summarize, table } from './lib/stats.ts';

export const APPROVAL_ROUNDS = 200;

export async function approvalSection(rounds = APPROVAL_ROUNDS): Promise<string> {
  const as = await startTransactionServer();
  const upstream = await startScriptedUpstream();
  const env = { ...process.env, BENCH_APPROVALS_SECRET: SECRETS.gateway };
  const gateway = await startTestGateway(
    () => [
      {
        path: '/mcp',
        upstream: upstream.url,
        resource: BANK,
        authorization_servers: [as.issuer],
        tools: {
          read_balance: { scopes: ['banking:transfer'] },
          transfer: { scopes: ['banking:transfer'], approval: { binds: ['amount', 'to'], summary: 'Transfer {amount} EUR to {to}' } },
        },
        approvals: { client_id: 'gateway', client_secret_env: 'BENCH_APPROVALS_SECRET', retry_check: true },
      },
    ],
    {},
    env,
  );
  try {
    const own = await signIn(as, { clientId: 'sample-agent', secret: SECRETS.agent, resource: AGENT });
    const agentAuth = { authorization: basic('sample-agent', SECRETS.agent) };
    /** The agent's token at the bank (act: the agent), carrying the approvals named, if any. */
    const bankToken = async (...transactionIds: string[]) => {
      const form: Record<string, string> = { subject_token: own.accessToken, resource: BANK };
      if (transactionIds.length > 0) form.authorization_details = JSON.stringify(transactionIds.map((id) => ({ type: 'mcp_tool_call', transaction_id: id })));
      const res = await exchange(as, form, agentAuth);
      if (res.status !== 200) throw new Error(`exchange: ${res.text}`);
      return res.json.access_token as string;
    };
    let id = 1;
    const accessToken = await bankToken();
    const sub = JSON.parse(Buffer.from(accessToken.split('.')[1]!, 'base64url').toString()).sub as string;
    const url = `${gateway.url}/mcp`;
    const timed = async (message: unknown, token = accessToken) => {
      const started = performance.now();
      const res = await mcpPost(url, message, { authorization: `Bearer ${token}`, 'mcp-protocol-version': '2025-11-25' });
      return { ms: performance.now() - started, res };
    };
    const heldCall = async (args: Record<string, unknown>) => {
      const h = await timed(toolCall('transfer', args, id++));
      const error = h.res.json?.error as { code?: number; data?: { elicitations?: { elicitationId?: string }[] } } | undefined;
      const tx = error?.data?.elicitations?.[0]?.elicitationId;
      if (error?.code !== -32042 || !tx) throw new Error(`held call: ${h.res.status} ${h.res.text}`);
      if (!(await as.store.transactions.decide(tx, sub, { status: 'approved', at: as.ctx.now(), how: 'password' }))) throw new Error('approve failed');
      return { ms: h.ms, tx };
    };
    const plain: number[] = [];
    const held: number[] = [];
    const approved: number[] = [];
    const inToken: number[] = [];
    for (let round = -10; round < rounds; round++) {
      const a = await timed(toolCall('read_balance', {}, id++));
      if (a.res.status !== 200 || a.res.json?.error) throw new Error(`plain call: ${a.res.status} ${a.res.text}`);
      // A new recipient each round: a new action, a new transaction.
      const args = { amount: 250, to: `bob-${randomBytes(4).toString('hex')}` };
      const h = await heldCall(args);
      const r = await timed(toolCall('transfer', args, id++));
      if (r.res.status !== 200 || r.res.json?.error) throw new Error(`approved retry: ${r.res.status} ${r.res.text}`);
      // Another action, approved, then brought in a token (RAR).
      const rarArgs = { amount: 250, to: `carol-${randomBytes(4).toString('hex')}` };
      const { tx } = await heldCall(rarArgs);
      const rar = await bankToken(tx);
      const t = await timed(toolCall('transfer', rarArgs, id++), rar);
      if (t.res.status !== 200 || t.res.json?.error) throw new Error(`call with the approval in the token: ${t.res.status} ${t.res.text}`);
      if (round < 0) continue; // warm-up
      plain.push(a.ms);
      held.push(h.ms);
      approved.push(r.ms);
      inToken.push(t.ms);
    }
    const base = summarize(plain).median;
    const p90 = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length * 0.9)]!;
    const row = (name: string, values: number[]) => {
      const s = summarize(values);
      return [name, fmtFixed(s.min), fmtFixed(s.median), fmtFixed(p90(values)), name === 'plain' ? '—' : `+${fmtFixed(s.median - base)}`];
    };
    return [
      `## Approval (issue 14): ${rounds} rounds, one connection, ms`,
      '',
      'Real AS (SQLite in memory) + real gateway + trivial upstream, one process, loopback; plain = a tool without approval,',
      'held = the first call of a tool needing approval (transaction created at the AS, -32042), approved = its retry after',
      'the approval (the AS spends it: POST /transactions/{id}/use, then forwarded), in token = a token carrying the approval',
      '(RFC 9396; claimed in the gateway store, recorded at the AS, forwarded).',
      '',
      table(['call', 'min', 'median', 'p90', 'added (median)'], [row('plain', plain), row('held', held), row('approved', approved), row('in token', inToken)]),
      '',
    ].join('\n');
  } finally {
    await gateway.close();
    await upstream.close();
    await as.close();
  }
}
