// An assignmentLogger / banditLogger for Eppo's Node SDK that posts events to `sortition serve`
// (POST /api/v1/events with an ingest key). Events are batched, retried with exponential backoff and
// jitter (429/5xx/network errors), given an eventId so retries are stored once, and bounded in memory.
import { randomUUID } from 'node:crypto';

export function sortitionLogger(serverUrl, ingestKey, { batchSize = 500, flushMs = 500, maxPending = 100000 } = {}) {
  const url = serverUrl.replace(/\/$/, '') + '/api/v1/events';
  let queue = [];
  let sending = null;
  const stats = { sent: 0, dropped: 0, rejected: 0 };

  const enqueue = (event) => {
    if (queue.length >= maxPending) { stats.dropped += 1; console.warn('sortition logger: queue full, event dropped'); return; }
    queue.push({ eventId: randomUUID(), ...event });
    if (queue.length >= batchSize) void flush();
  };

  async function post(batch) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        const response = await fetch(url, {
          method: 'POST', body: JSON.stringify(batch),
          headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ingestKey}` },
        });
        if (response.ok) {
          const answer = await response.json();
          stats.sent += answer.accepted;
          stats.rejected += answer.rejected.length;
          return;
        }
        if (response.status !== 429 && response.status < 500) { stats.dropped += batch.length; return; }
      } catch (err) { /* network error: retry */ }
      const cap = Math.min(5000, 50 * 2 ** attempt);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * cap));
    }
  }

  async function flush() {
    while (sending) await sending;
    while (queue.length) {
      const batch = queue.splice(0, batchSize);
      sending = post(batch);
      await sending;
      sending = null;
    }
  }

  const timer = setInterval(() => { void flush(); }, flushMs);
  timer.unref();
  return {
    logAssignment: enqueue,
    logBanditAction: enqueue,
    flush,
    stats,
  };
}
