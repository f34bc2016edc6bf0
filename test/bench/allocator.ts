/**
 * Allocator benchmark, the shape of Mesos' hierarchical_allocator_benchmarks: 10,000 agents of
 * `cpus:2;mem:1024;disk:4096;ports:[31000-32000]` and 1,000 frameworks. Times one full allocation
 * cycle that offers every agent (the headline `cycleMs`, frameworks one per role so both sorter
 * levels work), the same with all frameworks in one role, and, on a smaller cluster, a cycle in
 * which every framework has declined every agent with a filter (the worst case of the walk).
 *
 * Run alone: npx tsx -e "import('./test/bench/allocator.ts').then(m=>m.default({json:false}))"
 */

import { performance } from 'node:perf_hooks';
import { Allocator } from '../../master/allocator/allocator.ts';
import { parseResources } from '../../master/protocol/resources.ts';
import { median } from './stats.ts';

const AGENTS = 10_000;
const FRAMEWORKS = 1_000;
const RUNS = 7;
const AGENT = parseResources('cpus:2;mem:1024;disk:4096;ports:[31000-32000]');

function build(rolesPerFramework: 'one-each' | 'shared'): Allocator {
  const allocator = new Allocator();
  for (let i = 0; i < AGENTS; i++) allocator.addAgent(`agent-${i}`, AGENT);
  for (let i = 0; i < FRAMEWORKS; i++) {
    allocator.addFramework(`framework-${i}`, rolesPerFramework === 'one-each' ? `role-${i}` : 'role');
  }
  return allocator;
}

/** Median time of a full cycle; between runs every offer is recovered so the next cycle offers everything again. */
function timeFullCycles(allocator: Allocator): number {
  const times: number[] = [];
  let nowMs = 0;
  for (let run = 0; run < RUNS; run++) {
    const start = performance.now();
    const offers = allocator.allocate(nowMs);
    times.push(performance.now() - start);
    if (offers.length !== AGENTS) throw new Error(`expected ${AGENTS} offers, got ${offers.length}`);
    for (const offer of offers) allocator.recover(offer.frameworkId, offer.agentId, offer.resources, undefined, nowMs);
    nowMs += 1000;
  }
  return median(times);
}

/**
 * Worst case of the framework walk: every framework has declined every agent with a long filter,
 * so each agent is checked against every framework. Smaller shape (filters are per pair).
 */
const DECLINE_AGENTS = 2_000;
const DECLINE_FRAMEWORKS = 100;

function timeAllDeclined(): number {
  const allocator = new Allocator();
  for (let i = 0; i < DECLINE_AGENTS; i++) allocator.addAgent(`agent-${i}`, AGENT);
  for (let i = 0; i < DECLINE_FRAMEWORKS; i++) allocator.addFramework(`framework-${i}`, `role-${i}`);
  let nowMs = 0;
  for (let round = 0; round < DECLINE_FRAMEWORKS; round++) {
    for (const offer of allocator.allocate(nowMs)) {
      allocator.recover(offer.frameworkId, offer.agentId, offer.resources, 3600, nowMs);
    }
  }
  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    // Adding a framework and suppressing it again makes every agent worth re-walking, as any
    // eligibility change does; the walk then finds every framework filtered.
    allocator.addFramework(`probe-${run}`, 'probe');
    allocator.suppress(`probe-${run}`);
    const start = performance.now();
    const offers = allocator.allocate(nowMs);
    times.push(performance.now() - start);
    if (offers.length !== 0) throw new Error(`expected no offers, got ${offers.length}`);
  }
  return median(times);
}

export default async function run(opts: { json: boolean }): Promise<Record<string, unknown>> {
  const cycleMs = timeFullCycles(build('one-each'));
  const cycleMsOneRole = timeFullCycles(build('shared'));
  const allDeclinedCycleMs = timeAllDeclined();
  const result = {
    bench: 'allocator',
    agents: AGENTS,
    frameworks: FRAMEWORKS,
    cycleMs: round(cycleMs),
    cycleMsOneRole: round(cycleMsOneRole),
    allDeclinedShape: `${DECLINE_AGENTS} agents × ${DECLINE_FRAMEWORKS} frameworks`,
    allDeclinedCycleMs: round(allDeclinedCycleMs),
  };
  if (!opts.json) {
    console.log(
      `allocator: ${AGENTS} agents × ${FRAMEWORKS} frameworks — full cycle ${result.cycleMs} ms ` +
        `(one role: ${result.cycleMsOneRole} ms; ${result.allDeclinedShape} all declined: ${result.allDeclinedCycleMs} ms), median of ${RUNS}`,
    );
  }
  return result;
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
