import { z } from 'zod';
import { AdminError } from '../errors.ts';
import { defineOperation } from '../operation.ts';

const day = z.iso.date().describe('A UTC day, YYYY-MM-DD.');

export const usageReport = defineOperation({
  name: 'reports.usage',
  area: 'reports',
  access: 'read',
  summary: 'Tokens issued, token exchanges and refusals per UTC day, counted from the audit log. At most 92 days.',
  input: z.strictObject({ from: day.optional().describe('First day; 6 days before `to` when omitted.'), to: day.optional().describe('Last day (inclusive); today when omitted.') }),
  output: z.strictObject({
    days: z.array(z.strictObject({ day: z.string(), tokens_issued: z.number().int(), exchanges: z.number().int(), refusals: z.number().int() })),
    totals: z.strictObject({ tokens_issued: z.number().int(), exchanges: z.number().int(), refusals: z.number().int() }),
  }),
  async run(deps, input) {
    const toDay = input.to ? Date.parse(`${input.to}T00:00:00Z`) / 86_400_000 : Math.floor(deps.now() / 86_400);
    const fromDay = input.from ? Date.parse(`${input.from}T00:00:00Z`) / 86_400_000 : toDay - 6;
    if (fromDay > toDay) throw new AdminError('invalid_request', 'from is after to');
    if (toDay - fromDay >= 92) throw new AdminError('invalid_request', 'at most 92 days per report');
    await deps.audit.flush();
    const counts = await deps.store.audit.dailyCounts(fromDay * 86_400, (toDay + 1) * 86_400);
    const days = [];
    const totals = { tokens_issued: 0, exchanges: 0, refusals: 0 };
    for (let d = fromDay; d <= toDay; d++) {
      const of = (kind: string) => counts.filter((c) => c.day === d && c.kind === kind).reduce((n, c) => n + c.count, 0);
      // Exchanges are tokens issued too: tokens_issued counts every token, exchanges the part that came from one.
      const row = { day: new Date(d * 86_400_000).toISOString().slice(0, 10), tokens_issued: of('issued') + of('exchange'), exchanges: of('exchange'), refusals: of('refusal') };
      totals.tokens_issued += row.tokens_issued;
      totals.exchanges += row.exchanges;
      totals.refusals += row.refusals;
      days.push(row);
    }
    return { days, totals };
  },
});
