/**
 * Counts the inputs each fuzz property ran, for `npm run fuzz`'s total: one `fuzz-inputs <n>`
 * line per property on stdout (the test runner shows it as a comment).
 */
export function counted<T extends unknown[], R>(name: string, check: (...args: T) => R): (...args: T) => R {
  let n = 0;
  process.once('beforeExit', () => console.log(`fuzz-inputs ${n} ${name}`));
  return (...args: T) => {
    n++;
    return check(...args);
  };
}
