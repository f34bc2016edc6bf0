/**
 * `npm run bench -- NAME [--json]`: runs one benchmark and prints its figures. With --json the last
 * line printed is one JSON object. Benchmarks print numbers; nothing here asserts on time.
 */
const BENCHES = ['launch', 'allocator', 'spawn', 'docker', 'services', 'services-scale', 'batch', 'batch-scale'] as const;

const args = process.argv.slice(2);
const json = args.includes('--json');
const name = args.find((a) => !a.startsWith('--'));
if (!name || !(BENCHES as readonly string[]).includes(name)) {
  process.stderr.write(`usage: npm run bench -- NAME [--json]\n  NAME: one of ${BENCHES.join(', ')}\n`);
  process.exit(2);
}
process.env.AGORA_LOG_LEVEL ??= 'warn';
const bench = (await import(`./${name}.ts`)) as { default: (opts: { json: boolean }) => Promise<Record<string, unknown>> };
const result = await bench.default({ json });
if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
