import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { unavailableReason } from '../../src/store/unavailable.ts';

/** Which errors become 503 temporarily_unavailable (a dependency is down) and which stay 500 (a bug). */
describe('unavailableReason', () => {
  const coded = (code: string, message = 'x') => Object.assign(new Error(message), { code });

  it('recognises a database or Redis that cannot serve', () => {
    assert.match(unavailableReason(coded('57P01', 'terminating connection due to administrator command'))!, /57P01/);
    assert.match(unavailableReason(coded('08006'))!, /08006/);
    assert.match(unavailableReason(coded('57P03', 'the database system is starting up'))!, /57P03/);
    assert.match(unavailableReason(coded('ECONNREFUSED'))!, /ECONNREFUSED/);
    assert.match(unavailableReason(coded('SQLITE_BUSY'))!, /SQLITE_BUSY/);
    assert.ok(unavailableReason(new Error('Connection terminated unexpectedly')));
    assert.ok(unavailableReason(new Error('timeout exceeded when trying to connect')));
    assert.ok(unavailableReason(Object.assign(new Error('Reached the max retries per request limit'), { name: 'MaxRetriesPerRequestError' })));
    // Wrapped, as the migrator's error is.
    assert.ok(unavailableReason(new Error('database migration failed', { cause: coded('ECONNREFUSED') })));
  });

  it('leaves bugs and bad data alone: they stay 500', () => {
    assert.equal(unavailableReason(coded('23505', 'duplicate key value violates unique constraint')), undefined);
    assert.equal(unavailableReason(coded('42601', 'syntax error')), undefined);
    assert.equal(unavailableReason(coded('SQLITE_CONSTRAINT_PRIMARYKEY')), undefined);
    assert.equal(unavailableReason(new TypeError("Cannot read properties of undefined (reading 'x')")), undefined);
    assert.equal(unavailableReason('Connection terminated'), undefined);
    assert.equal(unavailableReason(undefined), undefined);
  });
});
