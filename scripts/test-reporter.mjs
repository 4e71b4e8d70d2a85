// A node:test reporter for `npm test` (scripts/test.mjs), beside the spec reporter: it writes one
// JSON line per failed test and per failed or cancelled file, so the run can end by naming them.
// On Node 20 --test-timeout bounds a whole file: a file that runs past it is cancelled, and its
// only trace is a failure of the file itself (failureType testTimeoutFailure), which the spec
// summary does not count under "fail". A file that cannot load fails the same way.
import { relative } from 'node:path';

// A file can also fail with every test passed: an uncaught exception or an unhandled rejection
// that no running test owns is reported only as a diagnostic ("Error: ... generated asynchronous
// activity after the test ended ..."), printed just before the file's result. It is kept here and
// named with the file's failure, so the run's last lines say what it was.
export default async function* failures(source) {
  let errors = [];
  let fileDiagnostics = [];
  for await (const event of source) {
    if (event.type === 'test:diagnostic' && event.data.nesting === 0 && /^(Error|Warning): /.test(event.data.message)) errors.push(event.data.message);
    const fileResult = event.data?.nesting === 0 && event.data.file && event.data.name === event.data.file;
    // A file's own result (test:complete, passed or not, then test:fail if not) ends what its diagnostics can belong to.
    if (event.type === 'test:complete' && fileResult) {
      fileDiagnostics = errors;
      errors = [];
    }
    if (event.type !== 'test:fail') continue;
    const diagnostics = fileResult ? fileDiagnostics : [];
    const { name, file, nesting, details } = event.data;
    const error = details?.error;
    // A suite whose tests failed fails too; its tests are listed already.
    if (error?.failureType === 'subtestsFailed') continue;
    yield `${JSON.stringify({
      file: file ? relative(process.cwd(), file) : null,
      test: nesting === 0 && name === file ? null : name,
      kind: error?.failureType ?? null,
      message: String(error?.cause?.message ?? error?.message ?? '').split('\n')[0],
      exitCode: error?.exitCode ?? null,
      ...(diagnostics.length > 0 ? { diagnostics } : {}),
    })}\n`;
  }
}
