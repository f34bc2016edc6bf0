import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Allocator } from '../../master/allocator/allocator.ts';
import {
  add,
  contains,
  equals,
  isEmpty,
  rangeCount,
  rangesOf,
  scalar,
  subtract,
  type Resources,
} from '../../master/protocol/resources.ts';

const AGENT: Resources = { cpus: 4, mem: 4096, ports: [[31000, 31009]] };
const AGENT_IDS = ['a0', 'a1', 'a2', 'a3', 'a4'];
const FRAMEWORK_IDS = ['f0', 'f1', 'f2', 'f3'];
const ROLES = ['r0', 'r1'];

type Command =
  | { kind: 'addAgent'; agent: number }
  | { kind: 'removeAgent'; agent: number }
  | { kind: 'toggleAgent'; agent: number }
  | { kind: 'addFramework'; framework: number; role: number }
  | { kind: 'removeFramework'; framework: number }
  | { kind: 'toggleFramework'; framework: number }
  | { kind: 'suppress'; framework: number }
  | { kind: 'revive'; framework: number }
  | { kind: 'allocate'; advanceMs: number }
  | { kind: 'recover'; framework: number; agent: number; part: 'all' | 'some'; refuseSeconds: number | undefined }
  | { kind: 'recordUse'; framework: number; agent: number; cpus: number; port: number };

const agent = fc.nat(AGENT_IDS.length - 1);
const framework = fc.nat(FRAMEWORK_IDS.length - 1);
const command: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('addAgent' as const), agent }), weight: 3 },
  fc.record({ kind: fc.constant('removeAgent' as const), agent }),
  fc.record({ kind: fc.constant('toggleAgent' as const), agent }),
  { arbitrary: fc.record({ kind: fc.constant('addFramework' as const), framework, role: fc.nat(ROLES.length - 1) }), weight: 3 },
  fc.record({ kind: fc.constant('removeFramework' as const), framework }),
  fc.record({ kind: fc.constant('toggleFramework' as const), framework }),
  fc.record({ kind: fc.constant('suppress' as const), framework }),
  fc.record({ kind: fc.constant('revive' as const), framework }),
  { arbitrary: fc.record({ kind: fc.constant('allocate' as const), advanceMs: fc.nat(3000) }), weight: 4 },
  {
    arbitrary: fc.record({
      kind: fc.constant('recover' as const),
      framework,
      agent,
      part: fc.constantFrom('all' as const, 'some' as const),
      refuseSeconds: fc.option(fc.nat(5), { nil: undefined }),
    }),
    weight: 4,
  },
  fc.record({ kind: fc.constant('recordUse' as const), framework, agent, cpus: fc.integer({ min: 1, max: 2 }), port: fc.nat(9) }),
);

/** The test's own ledger: what each framework holds on each agent, built only from the allocator's answers. */
class Ledger {
  readonly held = new Map<string, Map<string, Resources>>(); // agent → framework → resources

  give(agentId: string, frameworkId: string, resources: Resources): void {
    let byFramework = this.held.get(agentId);
    if (byFramework === undefined) this.held.set(agentId, (byFramework = new Map()));
    byFramework.set(frameworkId, add(byFramework.get(frameworkId) ?? {}, resources));
  }

  take(agentId: string, frameworkId: string, resources: Resources): void {
    const byFramework = this.held.get(agentId);
    const had = byFramework?.get(frameworkId);
    if (byFramework === undefined || had === undefined) return;
    const left = subtract(had, resources);
    if (isEmpty(left)) byFramework.delete(frameworkId);
    else byFramework.set(frameworkId, left);
  }
}

function checkInvariants(allocator: Allocator, ledger: Ledger, agents: Set<string>, frameworks: Set<string>): void {
  for (const agentId of agents) {
    const held = ledger.held.get(agentId) ?? new Map<string, Resources>();
    let sum: Resources = {};
    let portsHeld = 0;
    for (const frameworkId of frameworks) {
      const ours = held.get(frameworkId) ?? {};
      // The allocator's books agree with what it told us.
      expect(equals(allocator.allocated(frameworkId, agentId), ours)).toBe(true);
      sum = add(sum, ours);
      portsHeld += rangeCount(rangesOf(ours, 'ports'));
    }
    // Never over-committed: everything held fits in the agent, and no port is held twice.
    expect(contains(AGENT, sum)).toBe(true);
    expect(portsHeld).toBe(rangeCount(rangesOf(sum, 'ports')));
    // available = total − allocated.
    expect(equals(allocator.available(agentId), subtract(AGENT, sum))).toBe(true);
  }
}

describe('Allocator properties', () => {
  it('never gives a resource to two frameworks at once nor over-commits an agent', () => {
    fc.assert(
      fc.property(fc.array(command, { minLength: 1, maxLength: 60 }), (commands) => {
        const allocator = new Allocator({ weights: { r1: 2 } });
        const ledger = new Ledger();
        const agents = new Set<string>();
        const frameworks = new Set<string>();
        const inactiveAgents = new Set<string>();
        const ineligible = new Set<string>(); // inactive or suppressed
        const inactiveFrameworks = new Set<string>();
        const suppressed = new Set<string>();
        let nowMs = 0;
        const refreshEligibility = (id: string): void => {
          if (inactiveFrameworks.has(id) || suppressed.has(id)) ineligible.add(id);
          else ineligible.delete(id);
        };

        for (const c of commands) {
          switch (c.kind) {
            case 'addAgent': {
              const id = AGENT_IDS[c.agent]!;
              if (agents.has(id)) break;
              allocator.addAgent(id, AGENT);
              agents.add(id);
              break;
            }
            case 'removeAgent': {
              const id = AGENT_IDS[c.agent]!;
              allocator.removeAgent(id);
              agents.delete(id);
              inactiveAgents.delete(id);
              ledger.held.delete(id);
              break;
            }
            case 'toggleAgent': {
              const id = AGENT_IDS[c.agent]!;
              if (!agents.has(id)) break;
              if (inactiveAgents.delete(id)) allocator.activateAgent(id);
              else {
                inactiveAgents.add(id);
                allocator.deactivateAgent(id);
              }
              break;
            }
            case 'addFramework': {
              const id = FRAMEWORK_IDS[c.framework]!;
              if (frameworks.has(id)) break;
              allocator.addFramework(id, ROLES[c.role]!);
              frameworks.add(id);
              break;
            }
            case 'removeFramework': {
              const id = FRAMEWORK_IDS[c.framework]!;
              allocator.removeFramework(id);
              frameworks.delete(id);
              for (const byFramework of ledger.held.values()) byFramework.delete(id);
              inactiveFrameworks.delete(id);
              suppressed.delete(id);
              refreshEligibility(id);
              break;
            }
            case 'toggleFramework': {
              const id = FRAMEWORK_IDS[c.framework]!;
              if (!frameworks.has(id)) break;
              if (inactiveFrameworks.delete(id)) allocator.activateFramework(id);
              else {
                inactiveFrameworks.add(id);
                allocator.deactivateFramework(id);
              }
              refreshEligibility(id);
              break;
            }
            case 'suppress':
            case 'revive': {
              const id = FRAMEWORK_IDS[c.framework]!;
              if (!frameworks.has(id)) break;
              if (c.kind === 'suppress') {
                allocator.suppress(id);
                suppressed.add(id);
              } else {
                allocator.revive(id);
                suppressed.delete(id);
              }
              refreshEligibility(id);
              break;
            }
            case 'allocate': {
              nowMs += c.advanceMs;
              const before = new Map([...agents].map((id) => [id, allocator.available(id)]));
              const offers = allocator.allocate(nowMs);
              const offered = new Set<string>();
              for (const offer of offers) {
                expect(offered.has(offer.agentId)).toBe(false);
                offered.add(offer.agentId);
                expect(agents.has(offer.agentId) && !inactiveAgents.has(offer.agentId)).toBe(true);
                expect(frameworks.has(offer.frameworkId) && !ineligible.has(offer.frameworkId)).toBe(true);
                expect(contains(before.get(offer.agentId)!, offer.resources)).toBe(true);
                ledger.give(offer.agentId, offer.frameworkId, offer.resources);
              }
              break;
            }
            case 'recover': {
              const frameworkId = FRAMEWORK_IDS[c.framework]!;
              const agentId = AGENT_IDS[c.agent]!;
              const held = ledger.held.get(agentId)?.get(frameworkId);
              if (held === undefined) break;
              const part = c.part === 'all' ? held : { cpus: Math.min(1, scalar(held, 'cpus')), mem: Math.min(100, scalar(held, 'mem')) };
              allocator.recover(frameworkId, agentId, part, c.refuseSeconds, nowMs);
              ledger.take(agentId, frameworkId, part);
              break;
            }
            case 'recordUse': {
              const frameworkId = FRAMEWORK_IDS[c.framework]!;
              const agentId = AGENT_IDS[c.agent]!;
              if (!frameworks.has(frameworkId) || !agents.has(agentId)) break;
              const use: Resources = { cpus: c.cpus, ports: [[31000 + c.port, 31000 + c.port]] };
              if (!contains(allocator.available(agentId), use)) break;
              allocator.recordUse(frameworkId, agentId, use);
              ledger.give(agentId, frameworkId, use);
              break;
            }
          }
          checkInvariants(allocator, ledger, agents, frameworks);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('converges to DRF when frameworks accept everything on identical agents', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }), // frameworks
        fc.array(fc.oneof(fc.constant('addAgent' as const), fc.constant('allocate' as const), fc.constant('finishTask' as const)), {
          minLength: 1,
          maxLength: 80,
        }),
        (frameworkCount, steps) => {
          const allocator = new Allocator();
          const ids = Array.from({ length: frameworkCount }, (_, i) => `f${i}`);
          for (const id of ids) allocator.addFramework(id, 'r');
          const held: { frameworkId: string; agentId: string }[] = [];
          let agentCount = 0;
          let nowMs = 0;
          const allocate = (): void => {
            for (const offer of allocator.allocate(nowMs++)) held.push(offer);
          };
          for (const step of steps) {
            if (step === 'addAgent') allocator.addAgent(`a${agentCount++}`, AGENT);
            else if (step === 'allocate') allocate();
            else if (held.length > 0) {
              // A whole agent's task finishes: it goes back and is re-offered by the next cycle.
              const [finished] = held.splice(nowMs % held.length, 1);
              allocator.recover(finished!.frameworkId, finished!.agentId, AGENT, undefined, nowMs);
            }
          }
          allocate();
          if (agentCount === 0) return;
          const shares = ids.map((id) => allocator.dominantShare(id));
          expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1 / agentCount + 1e-9);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('shares between differently weighted roles track their weights', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 20, max: 60 }), (weight, agentCount) => {
        const allocator = new Allocator({ weights: { heavy: weight } });
        for (let i = 0; i < agentCount; i++) allocator.addAgent(`a${i}`, AGENT);
        allocator.addFramework('h', 'heavy');
        allocator.addFramework('l', 'light');
        allocator.allocate(0);
        const heavy = allocator.roleShare('heavy');
        const light = allocator.roleShare('light');
        // Greedy DRF leaves the weighted shares at most one agent apart.
        expect(Math.abs(heavy / weight - light)).toBeLessThanOrEqual(1 / agentCount + 1e-9);
      }),
      { numRuns: 100 },
    );
  });
});
