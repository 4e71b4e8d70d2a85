import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { displayUser, forTerminal } from '../../src/agent/index.ts';

describe('agent: text from servers is printed as text, never as terminal control', () => {
  it('escape sequences, carriage returns, C1 controls and bidi/zero-width format characters become U+FFFD', () => {
    const clipboard = '\u001b]52;c;aGVsbG8=\u0007';
    assert.equal(forTerminal(`Eve${clipboard}`), 'Eve\uFFFD]52;c;aGVsbG8=\uFFFD');
    assert.equal(forTerminal('ok\rSigned in as admin'), 'ok\uFFFDSigned in as admin');
    assert.equal(forTerminal('a\u009b2Jb'), 'a\uFFFD2Jb', 'C1 CSI');
    assert.equal(forTerminal('user\u202Enimda'), 'user\uFFFDnimda', 'right-to-left override');
    assert.equal(forTerminal('ad\u200Bmin\uFEFF'), 'ad\uFFFDmin\uFFFD', 'zero-width space and BOM');
    assert.equal(forTerminal('\u0000\u007f'), '\uFFFD\uFFFD');
  });

  it('keeps what people write: newlines, tabs, accents, other scripts, emoji', () => {
    const text = 'Zoë Müller\tJosé 李雷 مرحبا 🙂\nline two';
    assert.equal(forTerminal(text), text);
  });

  it('the person\'s name from an ID token is shown safe', () => {
    assert.equal(displayUser({ sub: 's', preferred_username: 'eve', name: 'Eve\u001b[2K\rDemo User' }, 's'), 'Eve\uFFFD[2K\uFFFDDemo User (eve)');
    assert.equal(displayUser(undefined, 'sub\u001b[31m'), 'sub\uFFFD[31m');
  });
});
