import { hashPassword } from '../auth-server/passwords.ts';

/** Reads a password without echoing it on a terminal (or one line from a pipe). */
async function readPassword(): Promise<string> {
  const input = process.stdin;
  if (!input.isTTY) {
    let text = '';
    for await (const chunk of input) text += chunk;
    return text.split(/\r?\n/)[0] ?? '';
  }
  process.stderr.write('Password: ');
  input.setRawMode(true);
  input.setEncoding('utf8');
  return new Promise((resolve) => {
    let password = '';
    const onData = (key: string) => {
      for (const ch of key) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          input.setRawMode(false);
          input.pause();
          input.off('data', onData);
          process.stderr.write('\n');
          return resolve(password);
        }
        if (ch === '\u0003') process.exit(130);
        password = ch === '\u007f' ? password.slice(0, -1) : password + ch;
      }
    };
    input.on('data', onData);
  });
}

export async function hashPasswordCommand(): Promise<number> {
  const password = await readPassword();
  if (!password) {
    process.stderr.write('no password given\n');
    return 2;
  }
  process.stdout.write(`${await hashPassword(password)}\n`);
  return 0;
}
