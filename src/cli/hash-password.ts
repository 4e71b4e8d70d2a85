import { createInterface } from 'node:readline/promises';
import { hashPassword } from '../auth-server/passwords.ts';

export async function hashPasswordCommand(): Promise<number> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: false });
  if (process.stdin.isTTY) process.stderr.write('Password: ');
  const password = (await rl[Symbol.asyncIterator]().next()).value as string | undefined;
  rl.close();
  if (!password) {
    process.stderr.write('no password given\n');
    return 2;
  }
  process.stdout.write(`${await hashPassword(password)}\n`);
  return 0;
}
