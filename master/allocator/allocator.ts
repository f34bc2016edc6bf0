/**
 * The allocator: decides which framework is offered each agent's free resources.
 *
 * Hierarchical DRF like Mesos (src/master/allocator/mesos/hierarchical.cpp): roles are sorted by
 * weighted dominant share, then the frameworks of a role by their own dominant share; for every
 * agent (in shuffled order, so no agent is always first) the whole of its available resources is
 * offered to the first framework in that order that is active, not suppressed and not filtered
 * for that agent. Offered resources count as allocated from that moment; the master hands them
 * back with `recover` when they are declined, rescinded or freed by a finished task.
 *
 * Pure: no sockets, no timers, no I/O. Time comes in as `nowMs`; randomness from a seeded PRNG.
 *
 * Usage (what the master does):
 * ```ts
 * const allocator = new Allocator({ weights: { prod: 2 } });
 * allocator.addAgent('a1', parseResources('cpus:4;mem:8192;ports:[31000-32000]'));
 * allocator.addFramework('f1', 'prod');
 * for (const offer of allocator.allocate(Date.now())) sendOffer(offer);
 * // scheduler declines with refuseSeconds 5:
 * allocator.recover('f1', 'a1', offer.resources, 5, Date.now());
 * ```
 */

import { add, contains, isEmpty, normalize, subtract, type Resources } from '../protocol/resources.ts';
import { ClusterTotals, DrfSorter } from './drf-sorter.ts';
import { blocks, FilterExpiryQueue, MAX_REFUSE_SECONDS, type RefuseFilter } from './filters.ts';

export interface AllocatorOptions {
  /** An agent's available resources are offered only if they contain at least one of these. An empty list offers any non-empty set. @default [{cpus:0.01},{mem:32}] (Mesos) */
  minAllocatable?: Resources[];
  /** role → weight. @default 1 for every role */
  weights?: Record<string, number>;
  /** Seed of the PRNG that shuffles the agent order each cycle; fixed so runs are reproducible. @default 0x2545f491 */
  seed?: number;
}

export interface OfferDecision {
  frameworkId: string;
  agentId: string;
  role: string;
  resources: Resources;
}

export class AllocatorError extends Error {
  override name = 'AllocatorError';
}

export class UnknownAgentError extends AllocatorError {
  override name = 'UnknownAgentError';
  constructor(readonly agentId: string) {
    super(`unknown agent "${agentId}"`);
  }
}

export class UnknownFrameworkError extends AllocatorError {
  override name = 'UnknownFrameworkError';
  constructor(readonly frameworkId: string) {
    super(`unknown framework "${frameworkId}"`);
  }
}

interface AgentState {
  readonly id: string;
  readonly total: Resources;
  /** total − Σ allocations; replaced, never mutated, so an offered object can be handed out as is. */
  available: Resources;
  active: boolean;
  /** frameworkId → resources allocated to it here (offered or in use). */
  readonly allocations: Map<string, Resources>;
  /** frameworkId → refuse filters it holds on this agent. */
  readonly filters: Map<string, RefuseFilter[]>;
  /** `eligibilityEpoch` at which no framework could take `available`; skipped until either changes. */
  blockedAtEpoch: number;
  /** Position in `agentList`. */
  index: number;
}

interface FrameworkState {
  readonly id: string;
  readonly role: string;
  active: boolean;
  suppressed: boolean;
  /** Agents where it holds an allocation. */
  readonly agentIds: Set<string>;
  /** Agents where it holds refuse filters. */
  readonly filteredAgentIds: Set<string>;
}

interface RoleState {
  readonly frameworks: DrfSorter;
}

const DEFAULT_MIN_ALLOCATABLE: Resources[] = [{ cpus: 0.01 }, { mem: 32 }];

export class Allocator {
  private readonly minAllocatable: Resources[];
  private readonly weights = new Map<string, number>();
  private readonly totals = new ClusterTotals();
  private readonly roleSorter = new DrfSorter(this.totals);
  private readonly roles = new Map<string, RoleState>();
  private readonly agents = new Map<string, AgentState>();
  /** Same agents as `agents`, in an array so a cycle can shuffle them without building one from the map. */
  private readonly agentList: AgentState[] = [];
  private readonly frameworks = new Map<string, FrameworkState>();
  private readonly filterQueue = new FilterExpiryQueue();
  private readonly dirtyAgents = new Set<string>();
  /** Bumped whenever a framework may take what it could not before (activated, revived, a filter gone). */
  private eligibilityEpoch = 0;
  private rngState: number;

  constructor(options: AllocatorOptions = {}) {
    this.minAllocatable = (options.minAllocatable ?? DEFAULT_MIN_ALLOCATABLE).map(normalize);
    for (const [role, weight] of Object.entries(options.weights ?? {})) this.setWeight(role, weight);
    this.rngState = (options.seed ?? 0x2545f491) >>> 0;
  }

  // ---- agents ----

  addAgent(agentId: string, total: Resources): void {
    if (this.agents.has(agentId)) throw new AllocatorError(`agent "${agentId}" is already added`);
    const normalized = normalize(total);
    const agent: AgentState = {
      id: agentId,
      total: normalized,
      available: cloneResources(normalized),
      active: true,
      allocations: new Map(),
      filters: new Map(),
      blockedAtEpoch: -1,
      index: this.agentList.length,
    };
    this.agents.set(agentId, agent);
    this.agentList.push(agent);
    this.totals.add(normalized);
    this.dirtyAgents.add(agentId);
  }

  /** Drops the agent's total, every allocation on it and every filter for it. No-op for an unknown agent. */
  removeAgent(agentId: string): void {
    const agent = this.agents.get(agentId);
    if (agent === undefined) return;
    for (const [frameworkId, resources] of agent.allocations) {
      const framework = this.frameworks.get(frameworkId)!;
      this.account(framework, resources, -1);
      framework.agentIds.delete(agentId);
    }
    for (const [frameworkId, filters] of agent.filters) {
      for (const filter of filters) this.filterQueue.kill(filter);
      this.frameworks.get(frameworkId)!.filteredAgentIds.delete(agentId);
    }
    const last = this.agentList.pop()!;
    if (last !== agent) {
      this.agentList[agent.index] = last;
      last.index = agent.index;
    }
    this.agents.delete(agentId);
    this.dirtyAgents.delete(agentId);
    this.totals.subtract(agent.total);
  }

  activateAgent(agentId: string): void {
    const agent = this.requireAgent(agentId);
    if (agent.active) return;
    agent.active = true;
    this.dirtyAgents.add(agentId);
  }

  /** An inactive (unreachable, draining) agent gets no offers; its allocations stay. */
  deactivateAgent(agentId: string): void {
    this.requireAgent(agentId).active = false;
  }

  hasAgent(agentId: string): boolean {
    return this.agents.has(agentId);
  }

  // ---- frameworks ----

  /** A framework's role is fixed for its lifetime (remove and re-add to change it). */
  addFramework(frameworkId: string, role: string, active = true): void {
    if (this.frameworks.has(frameworkId)) throw new AllocatorError(`framework "${frameworkId}" is already added`);
    const framework: FrameworkState = {
      id: frameworkId,
      role,
      active,
      suppressed: false,
      agentIds: new Set(),
      filteredAgentIds: new Set(),
    };
    this.frameworks.set(frameworkId, framework);
    let roleState = this.roles.get(role);
    if (roleState === undefined) {
      roleState = { frameworks: new DrfSorter(this.totals) };
      this.roles.set(role, roleState);
      this.roleSorter.add(role, this.weights.get(role) ?? 1, false);
    }
    roleState.frameworks.add(frameworkId, 1, false);
    this.syncEligibility(framework);
  }

  /** Releases everything allocated to the framework on every agent and drops its filters. No-op for an unknown framework. */
  removeFramework(frameworkId: string): void {
    const framework = this.frameworks.get(frameworkId);
    if (framework === undefined) return;
    for (const agentId of framework.agentIds) {
      const agent = this.agents.get(agentId)!;
      this.account(framework, agent.allocations.get(frameworkId)!, -1);
      agent.allocations.delete(frameworkId);
      this.refreshAvailable(agent);
    }
    framework.agentIds.clear();
    this.clearFilters(framework);
    const roleState = this.roles.get(framework.role)!;
    roleState.frameworks.remove(frameworkId);
    if (roleState.frameworks.size === 0) {
      this.roleSorter.remove(framework.role);
      this.roles.delete(framework.role);
    } else if (roleState.frameworks.activeCount === 0) {
      this.roleSorter.deactivate(framework.role);
    }
    this.frameworks.delete(frameworkId);
  }

  activateFramework(frameworkId: string): void {
    const framework = this.requireFramework(frameworkId);
    framework.active = true;
    this.syncEligibility(framework);
  }

  /**
   * A disconnected scheduler gets no offers; its allocations stay (its tasks still run). Like
   * Mesos, its refuse filters are dropped, so a failed-over scheduler starts from a clean slate.
   */
  deactivateFramework(frameworkId: string): void {
    const framework = this.requireFramework(frameworkId);
    framework.active = false;
    this.clearFilters(framework);
    this.syncEligibility(framework);
  }

  /** No offers until `revive`. Survives deactivate/activate. */
  suppress(frameworkId: string): void {
    const framework = this.requireFramework(frameworkId);
    framework.suppressed = true;
    this.syncEligibility(framework);
  }

  /** Un-suppresses and clears all the framework's refuse filters (Mesos REVIVE). */
  revive(frameworkId: string): void {
    const framework = this.requireFramework(frameworkId);
    framework.suppressed = false;
    this.clearFilters(framework);
    this.syncEligibility(framework);
  }

  hasFramework(frameworkId: string): boolean {
    return this.frameworks.has(frameworkId);
  }

  setWeight(role: string, weight: number): void {
    if (!(weight > 0) || !Number.isFinite(weight)) throw new RangeError(`weight of role "${role}" must be a positive number, got ${weight}`);
    this.weights.set(role, weight);
    if (this.roleSorter.has(role)) this.roleSorter.setWeight(role, weight);
  }

  // ---- resources ----

  /**
   * Records resources as used by a framework on an agent without an offer (tasks reported by a
   * re-registering agent). Trusts the agent: usage beyond what is available is recorded as is,
   * and the agent simply has nothing left to offer.
   */
  recordUse(frameworkId: string, agentId: string, resources: Resources): void {
    const framework = this.requireFramework(frameworkId);
    const agent = this.requireAgent(agentId);
    const used = normalize(resources);
    if (isEmpty(used)) return;
    const previous = agent.allocations.get(frameworkId);
    agent.allocations.set(frameworkId, previous === undefined ? used : add(previous, used));
    framework.agentIds.add(agentId);
    this.account(framework, used, 1);
    this.refreshAvailable(agent);
  }

  /**
   * Gives resources back (declined/unused/rescinded offer, finished task). With refuseSeconds > 0,
   * installs a refuse filter for (framework, agent) until nowMs + refuseSeconds·1000 (capped at a
   * year). Only what the framework holds there is released. No-op when the framework or agent is
   * already gone, since the master may learn of a removal and a decline in either order.
   */
  recover(frameworkId: string, agentId: string, resources: Resources, refuseSeconds: number | undefined, nowMs: number): void {
    const framework = this.frameworks.get(frameworkId);
    const agent = this.agents.get(agentId);
    if (framework === undefined || agent === undefined) return;
    const held = agent.allocations.get(frameworkId);
    if (held !== undefined) {
      const kept = subtract(held, resources);
      this.account(framework, subtract(held, kept), -1);
      if (isEmpty(kept)) {
        agent.allocations.delete(frameworkId);
        framework.agentIds.delete(agentId);
      } else {
        agent.allocations.set(frameworkId, kept);
      }
      this.refreshAvailable(agent);
    }
    if (refuseSeconds !== undefined && refuseSeconds > 0) {
      const expiresMs = nowMs + Math.min(refuseSeconds, MAX_REFUSE_SECONDS) * 1000;
      this.addFilter(framework, agent, normalize(resources), expiresMs);
    }
  }

  // ---- allocation ----

  /**
   * One allocation cycle over the given agents (all when omitted; unknown ids are skipped).
   * Returns at most one offer per agent; the offered resources are allocated to the framework
   * from that moment and the returned objects belong to the caller.
   */
  allocate(nowMs: number, agentIds?: Iterable<string>): OfferDecision[] {
    if (this.filterQueue.size > 0) this.expireFilters(nowMs);
    let agents: AgentState[];
    if (agentIds === undefined) {
      agents = this.agentList.slice();
      this.dirtyAgents.clear();
    } else {
      agents = [];
      for (const agentId of agentIds) {
        const agent = this.agents.get(agentId);
        if (agent === undefined) continue;
        agents.push(agent);
        this.dirtyAgents.delete(agentId);
      }
    }
    this.shuffle(agents);

    const offers: OfferDecision[] = [];
    for (const agent of agents) {
      if (!agent.active || agent.blockedAtEpoch === this.eligibilityEpoch) continue;
      const available = agent.available;
      if (!this.isAllocatable(available)) continue;
      const framework = this.pick(agent, nowMs);
      if (framework === undefined) {
        agent.blockedAtEpoch = this.eligibilityEpoch;
        continue;
      }
      agent.available = {};
      const previous = agent.allocations.get(framework.id);
      agent.allocations.set(framework.id, previous === undefined ? cloneResources(available) : add(previous, available));
      framework.agentIds.add(agent.id);
      this.account(framework, available, 1);
      offers.push({ frameworkId: framework.id, agentId: agent.id, role: framework.role, resources: available });
    }
    return offers;
  }

  /** Agents that gained available resources (or became offerable) since the last allocate() that covered them. */
  get dirtyAgentCount(): number {
    return this.dirtyAgents.size;
  }

  /** Earliest time a refuse filter expires (possibly already past), or undefined when there is none. */
  nextFilterExpiryMs(): number | undefined {
    return this.filterQueue.peekExpiryMs();
  }

  // ---- introspection ----

  /** total − allocated; `{}` for an unknown agent. */
  available(agentId: string): Resources {
    return cloneResources(this.agents.get(agentId)?.available ?? {});
  }

  /** What the framework holds on one agent, or on all agents summed. */
  allocated(frameworkId: string, agentId?: string): Resources {
    if (agentId !== undefined) return cloneResources(this.agents.get(agentId)?.allocations.get(frameworkId) ?? {});
    let sum: Resources = {};
    for (const id of this.frameworks.get(frameworkId)?.agentIds ?? []) {
      sum = add(sum, this.agents.get(id)!.allocations.get(frameworkId)!);
    }
    return sum;
  }

  /** The framework's dominant share of the cluster (unweighted; 0 when unknown). */
  dominantShare(frameworkId: string): number {
    const framework = this.frameworks.get(frameworkId);
    if (framework === undefined) return 0;
    return this.roles.get(framework.role)!.frameworks.share(frameworkId);
  }

  /** Whether the framework asked for no offers (SUPPRESS) and has not revived since. */
  isSuppressed(frameworkId: string): boolean {
    return this.frameworks.get(frameworkId)?.suppressed ?? false;
  }

  /** The role's dominant share of the cluster, over all its frameworks (unweighted). */
  roleShare(role: string): number {
    return this.roleSorter.share(role);
  }

  // ---- internals ----

  private requireAgent(agentId: string): AgentState {
    const agent = this.agents.get(agentId);
    if (agent === undefined) throw new UnknownAgentError(agentId);
    return agent;
  }

  private requireFramework(frameworkId: string): FrameworkState {
    const framework = this.frameworks.get(frameworkId);
    if (framework === undefined) throw new UnknownFrameworkError(frameworkId);
    return framework;
  }

  /** The first framework, in hierarchical DRF order, that may be offered the agent's available resources. */
  private pick(agent: AgentState, nowMs: number): FrameworkState | undefined {
    const filtered = agent.filters.size > 0;
    for (const role of this.roleSorter.sorted()) {
      for (const client of this.roles.get(role.name)!.frameworks.sorted()) {
        if (filtered) {
          const filters = agent.filters.get(client.name);
          if (filters !== undefined && anyBlocks(filters, agent.available, nowMs)) continue;
        }
        return this.frameworks.get(client.name);
      }
    }
    return undefined;
  }

  private isAllocatable(available: Resources): boolean {
    if (this.minAllocatable.length === 0) return !isEmpty(available);
    for (const minimum of this.minAllocatable) {
      if (contains(available, minimum) && !isEmpty(minimum)) return true;
    }
    return false;
  }

  /** Adds (1) or removes (−1) resources to the shares of a framework and its role. */
  private account(framework: FrameworkState, resources: Resources, sign: 1 | -1): void {
    this.roles.get(framework.role)!.frameworks.allocate(framework.id, resources, sign);
    this.roleSorter.allocate(framework.role, resources, sign);
  }

  /** Recomputes available = total − Σ allocations; robust even if usage was over-committed. */
  private refreshAvailable(agent: AgentState): void {
    let available = agent.total;
    for (const resources of agent.allocations.values()) available = subtract(available, resources);
    if (!contains(agent.available, available)) this.dirtyAgents.add(agent.id);
    // A fresh deep copy: `available` is handed out as an offer, so it must share no arrays with `total`.
    agent.available = cloneResources(available);
    agent.blockedAtEpoch = -1;
  }

  /** Puts the framework in or out of its role's DRF order, and the role in or out of the role order. */
  private syncEligibility(framework: FrameworkState): void {
    const roleSorter = this.roles.get(framework.role)!.frameworks;
    if (framework.active && !framework.suppressed) {
      if (!roleSorter.client(framework.id)!.active) this.eligibilityEpoch++;
      roleSorter.activate(framework.id);
    } else {
      roleSorter.deactivate(framework.id);
    }
    if (roleSorter.activeCount > 0) this.roleSorter.activate(framework.role);
    else this.roleSorter.deactivate(framework.role);
  }

  private addFilter(framework: FrameworkState, agent: AgentState, resources: Resources, expiresMs: number): void {
    let filters = agent.filters.get(framework.id);
    if (filters === undefined) {
      filters = [];
      agent.filters.set(framework.id, filters);
      framework.filteredAgentIds.add(agent.id);
    }
    // A filter that the new one covers for at least as long is redundant: drop it, so a scheduler
    // that declines the same offer every cycle does not grow the list.
    for (let i = filters.length - 1; i >= 0; i--) {
      const old = filters[i]!;
      if (old.expiresMs <= expiresMs && contains(resources, old.resources)) {
        this.filterQueue.kill(old);
        filters.splice(i, 1);
      }
    }
    const filter: RefuseFilter = { frameworkId: framework.id, agentId: agent.id, resources, expiresMs, live: true };
    filters.push(filter);
    this.filterQueue.push(filter);
  }

  private clearFilters(framework: FrameworkState): void {
    if (framework.filteredAgentIds.size === 0) return;
    for (const agentId of framework.filteredAgentIds) {
      const agent = this.agents.get(agentId)!;
      for (const filter of agent.filters.get(framework.id)!) this.filterQueue.kill(filter);
      agent.filters.delete(framework.id);
    }
    framework.filteredAgentIds.clear();
    this.eligibilityEpoch++;
  }

  private expireFilters(nowMs: number): void {
    const expired = this.filterQueue.popExpired(nowMs);
    if (expired.length === 0) return;
    for (const filter of expired) {
      const agent = this.agents.get(filter.agentId)!;
      const filters = agent.filters.get(filter.frameworkId)!;
      filters.splice(filters.indexOf(filter), 1);
      if (filters.length === 0) {
        agent.filters.delete(filter.frameworkId);
        this.frameworks.get(filter.frameworkId)!.filteredAgentIds.delete(filter.agentId);
      }
    }
    this.eligibilityEpoch++;
  }

  /** Fisher–Yates with mulberry32, so which agent goes first varies per cycle yet runs are reproducible. */
  private shuffle(agents: AgentState[]): void {
    for (let i = agents.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      const tmp = agents[i]!;
      agents[i] = agents[j]!;
      agents[j] = tmp;
    }
  }

  private random(): number {
    let t = (this.rngState = (this.rngState + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

function anyBlocks(filters: readonly RefuseFilter[], available: Resources, nowMs: number): boolean {
  for (const filter of filters) if (blocks(filter, available, nowMs)) return true;
  return false;
}

/** Deep copy, so callers can never alias the allocator's internal state. */
export function cloneResources(resources: Resources): Resources {
  const out: Resources = {};
  for (const name in resources) {
    const value = resources[name]!;
    if (typeof value === 'number') out[name] = value;
    else if (value.length > 0 && Array.isArray(value[0])) out[name] = (value as [number, number][]).map(([b, e]) => [b, e] as [number, number]);
    else out[name] = (value as string[]).slice();
  }
  return out;
}
