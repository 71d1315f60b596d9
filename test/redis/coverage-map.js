// The Redis suites measure coverage of the Redis store only: the rest has its own 100% in `npm test`.
export default () => ['lib/stores/redis.ts', 'lib/stores/redis-reader.ts', 'lib/stores/redis-scripts.ts', 'lib/stores/redis-runs.ts',
  'lib/stores/redis-run-scripts.ts', 'lib/stores/redis-script.ts', 'lib/stores/redis-presence.ts']
