import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { failure, handleStatelessMcp, text } from '../shared/stateless-mcp.ts';
import { z } from 'zod';

/**
 * The demo's banking MCP server (seed 001's topology): no auth code of its own. It is reached
 * only through the Mandate gateway, which checks tokens, authorizes each tool, audits the call,
 * and tells it who is calling in X-Mandate-Sub (`identity_headers` on the route). Accounts live in
 * memory, one per user, opened on first use.
 */
interface Account {
  balanceCents: number;
  transactions: { id: number; at: string; amountCents: number; counterparty: string; memo: string; by: string }[];
}

const OPENING_BALANCE_CENTS = 125_000;
const euros = (cents: number) => (cents / 100).toFixed(2);

export interface BankingServer {
  url: string;
  accounts: Map<string, Account>;
  close(): Promise<void>;
}

function accountOf(accounts: Map<string, Account>, sub: string): Account {
  let account = accounts.get(sub);
  if (!account) {
    account = { balanceCents: OPENING_BALANCE_CENTS, transactions: [{ id: 1, at: new Date().toISOString(), amountCents: OPENING_BALANCE_CENTS, counterparty: 'Mandate Demo Bank', memo: 'opening balance', by: sub }] };
    accounts.set(sub, account);
  }
  return account;
}


/** One MCP server per request (stateless Streamable HTTP), bound to the caller the gateway named. */
function bankFor(accounts: Map<string, Account>, req: IncomingMessage): McpServer {
  const sub = req.headers['x-mandate-sub'];
  const actor = (() => {
    try {
      const chain = JSON.parse(String(req.headers['x-mandate-act'] ?? '[]')) as { sub: string }[];
      return chain[0]?.sub;
    } catch {
      return undefined;
    }
  })();
  const server = new McpServer({ name: 'mandate-demo-bank', version: '1.0.0' });
  const withAccount = <T>(run: (account: Account, user: string) => T) => {
    if (typeof sub !== 'string' || sub === '') return failure('no caller identity: this server is meant to be reached through the Mandate gateway');
    return run(accountOf(accounts, sub), sub);
  };
  server.registerTool('read_balance', { description: "The user's account balance.", inputSchema: {} }, async () =>
    withAccount((account) => text({ balance: euros(account.balanceCents), currency: 'EUR' })),
  );
  server.registerTool(
    'list_transactions',
    { description: 'The most recent transactions, newest first.', inputSchema: { limit: z.number().int().min(1).max(100).optional() } },
    async ({ limit }) => withAccount((account) => text(account.transactions.slice(-(limit ?? 10)).reverse().map((t) => ({ ...t, amount: euros(t.amountCents), amountCents: undefined })))),
  );
  server.registerTool(
    'transfer',
    {
      description: 'Move money from the user’s account to someone else.',
      inputSchema: { to: z.string().min(1), amount: z.number().positive().max(1_000_000), memo: z.string().max(140).optional() },
    },
    async ({ to, amount, memo }) =>
      withAccount((account, user) => {
        const cents = Math.round(amount * 100);
        if (cents > account.balanceCents) return failure(`insufficient funds: the balance is ${euros(account.balanceCents)} EUR`);
        account.balanceCents -= cents;
        const record = { id: account.transactions.length + 1, at: new Date().toISOString(), amountCents: -cents, counterparty: to, memo: memo ?? '', by: actor ?? user };
        account.transactions.push(record);
        return text({ transferred: euros(cents), to, balance: euros(account.balanceCents), transaction: record.id, performed_by: record.by });
      }),
  );
  return server;
}

export async function startBankingServer(options: { host?: string; port?: number } = {}): Promise<BankingServer> {
  const accounts = new Map<string, Account>();
  const httpServer: Server = createServer(async (req, res) => {
    if (req.url !== '/' && !req.url?.startsWith('/?')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"the MCP endpoint is /"}');
      return;
    }
    const server = bankFor(accounts, req);
    await handleStatelessMcp(server, req, res);
  });
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(options.port ?? 8000, options.host ?? 'localhost', () => resolve());
  });
  const { port } = httpServer.address() as AddressInfo;
  return {
    url: `http://${options.host ?? 'localhost'}:${port}/`,
    accounts,
    close: () =>
      new Promise<void>((resolve) => {
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      }),
  };
}
