// Reads a JSON job on stdin ({baseUrl, apiKey, serverUrl, ingestKey, flags: [...], bandits: [...]}),
// evaluates every case with Eppo's Node SDK polling `sortition serve`, prints the results as JSON.
import { init } from '@eppo/node-server-sdk';
import { sortitionLogger } from './sortition-logger.mjs';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const job = JSON.parse(Buffer.concat(chunks).toString());
const logger = sortitionLogger(job.serverUrl, job.ingestKey, { flushMs: 50 });
const client = await init({
  apiKey: job.apiKey, baseUrl: job.baseUrl, assignmentLogger: logger, banditLogger: logger,
  pollingIntervalMs: 1000, throwOnFailedInitialization: true,
});
const getters = {
  STRING: 'getStringAssignment', INTEGER: 'getIntegerAssignment', NUMERIC: 'getNumericAssignment',
  BOOLEAN: 'getBooleanAssignment', JSON: 'getJSONAssignment',
};
const flags = job.flags.map((c) => client[getters[c.type]](c.flag, c.subject, c.attributes, c.default));
const bandits = job.bandits.map((c) => {
  const r = client.getBanditAction(c.flag, c.subject, c.attributes, c.actions, c.default);
  return [r.variation, r.action];
});
await logger.flush();
process.stdout.write('\nSORTITION-RESULT ' + JSON.stringify({ flags, bandits, stats: logger.stats }) + '\n', () => process.exit(0));
