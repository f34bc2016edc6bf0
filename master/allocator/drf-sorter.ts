/**
 * Dominant Resource Fairness sorter: answers "who is next?" and nothing else.
 *
 * A client (a role, or a framework within a role) has an allocation and a weight. Its dominant
 * share is the largest fraction it holds of any scalar resource in the cluster; clients sort by
 * dominant share ÷ weight, ties by name (Mesos: src/master/allocator/sorter/drf/sorter.cpp).
 * Like Mesos, only scalar resources count toward shares: ranges (ports) and sets do not.
 *
 * The order is kept incrementally: an allocation moves only the client it touched, found and
 * reinserted by binary search, so an allocation cycle never re-sorts everyone per agent. The one
 * event that moves every share at once, a change of the cluster total, bumps
 * `ClusterTotals.version`, and every sorter re-sorts lazily the next time it is read.
 */

import { roundScalar, type Resources } from '../protocol/resources.ts';

/** Scalar quantities by resource name: `{ cpus: 2, mem: 1024 }`. */
export type Quantities = Record<string, number>;

/** Sum of every agent's scalar resources; the denominator of every share. Shared by all sorters. */
export class ClusterTotals {
  readonly quantities: Quantities = {};
  /** Names with a positive total, iterated on every share computation. */
  keys: string[] = [];
  /** Bumped on every change so sorters know their cached shares are stale. */
  version = 0;

  add(resources: Resources): void {
    this.apply(resources, 1);
  }

  subtract(resources: Resources): void {
    this.apply(resources, -1);
  }

  private apply(resources: Resources, sign: 1 | -1): void {
    for (const name in resources) {
      const value = resources[name];
      if (typeof value !== 'number' || value === 0) continue;
      this.quantities[name] = Math.max(0, roundScalar((this.quantities[name] ?? 0) + sign * value));
    }
    this.keys = Object.keys(this.quantities).filter((name) => this.quantities[name]! > 0);
    this.version++;
  }

  /** The largest fraction of any scalar resource that `quantities` holds. */
  dominantShare(quantities: Quantities): number {
    let share = 0;
    for (const name of this.keys) {
      const held = quantities[name];
      if (held === undefined || held <= 0) continue;
      const fraction = held / this.quantities[name]!;
      if (fraction > share) share = fraction;
    }
    return share;
  }
}

export interface SorterClient {
  readonly name: string;
  readonly weight: number;
  readonly quantities: Readonly<Quantities>;
  /** Whether the client takes part in `sorted()`. */
  readonly active: boolean;
}

interface Client extends SorterClient {
  weight: number;
  quantities: Quantities;
  active: boolean;
  /** Dominant share ÷ weight as of the last time the client was positioned: the sort key. */
  key: number;
}

function compare(a: Client, b: Client): number {
  if (a.key !== b.key) return a.key - b.key;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

export class DrfSorter {
  private readonly clients = new Map<string, Client>();
  /** Active clients in DRF order. */
  private readonly order: Client[] = [];
  private sortedAtVersion: number;

  constructor(private readonly totals: ClusterTotals) {
    this.sortedAtVersion = totals.version;
  }

  get size(): number {
    return this.clients.size;
  }

  get activeCount(): number {
    return this.order.length;
  }

  has(name: string): boolean {
    return this.clients.has(name);
  }

  client(name: string): SorterClient | undefined {
    return this.clients.get(name);
  }

  add(name: string, weight = 1, active = true): void {
    if (this.clients.has(name)) throw new Error(`sorter client "${name}" already exists`);
    assertWeight(weight);
    const client: Client = { name, weight, quantities: {}, active: false, key: 0 };
    this.clients.set(name, client);
    if (active) this.activate(name);
  }

  /** Forgets the client and its allocation. */
  remove(name: string): void {
    const client = this.clients.get(name);
    if (client === undefined) return;
    if (client.active) this.unlink(client);
    this.clients.delete(name);
  }

  activate(name: string): void {
    const client = this.require(name);
    if (client.active) return;
    client.active = true;
    if (!this.fresh()) return;
    client.key = this.keyOf(client);
    this.link(client);
  }

  deactivate(name: string): void {
    const client = this.require(name);
    if (!client.active) return;
    this.fresh();
    this.unlink(client);
    client.active = false;
  }

  setWeight(name: string, weight: number): void {
    assertWeight(weight);
    const client = this.require(name);
    const from = this.positionBeforeChange(client);
    client.weight = weight;
    this.positionAfterChange(client, from);
  }

  /** Adds (sign 1) or removes (sign −1) the scalar quantities of `resources` to the client's allocation. */
  allocate(name: string, resources: Resources, sign: 1 | -1 = 1): void {
    const client = this.require(name);
    const from = this.positionBeforeChange(client);
    const quantities = client.quantities;
    for (const resource in resources) {
      const value = resources[resource];
      if (typeof value !== 'number' || value === 0) continue;
      // Never `delete`: it would turn the object into a slow dictionary; a zero counts for nothing.
      quantities[resource] = Math.max(0, roundScalar((quantities[resource] ?? 0) + sign * value));
    }
    this.positionAfterChange(client, from);
  }

  /** Unweighted dominant share of the client against the cluster total; 0 for an unknown client. */
  share(name: string): number {
    const client = this.clients.get(name);
    return client === undefined ? 0 : this.totals.dominantShare(client.quantities);
  }

  /**
   * Active clients, lowest weighted share first. The array is live: it is reordered by the next
   * `allocate`, so iterate it only until you change an allocation.
   */
  sorted(): readonly SorterClient[] {
    this.fresh();
    return this.order;
  }

  private require(name: string): Client {
    const client = this.clients.get(name);
    if (client === undefined) throw new Error(`unknown sorter client "${name}"`);
    return client;
  }

  private keyOf(client: Client): number {
    return this.totals.dominantShare(client.quantities) / client.weight;
  }

  /** Re-sorts everything if the cluster total changed since the last sort. Returns true when `order` was already fresh. */
  private fresh(): boolean {
    if (this.sortedAtVersion === this.totals.version) return true;
    this.order.length = 0;
    for (const client of this.clients.values()) {
      client.key = this.keyOf(client);
      if (client.active) this.order.push(client);
    }
    this.order.sort(compare);
    this.sortedAtVersion = this.totals.version;
    return false;
  }

  /** The client's index in `order` before its key changes, or −1 when it is not tracked there. */
  private positionBeforeChange(client: Client): number {
    // Not in `order`, or `order` is stale and the next read re-sorts everyone anyway.
    if (!client.active || this.sortedAtVersion !== this.totals.version) return -1;
    return this.indexOf(client);
  }

  /** Recomputes the key and, if the client is in `order`, moves it to its new place. */
  private positionAfterChange(client: Client, from: number): void {
    client.key = this.keyOf(client);
    if (from < 0) return;
    // Only this client moved: find its new place by binary search among the others. Two splices
    // (a memmove each) beat shifting element by element several times over at a thousand clients.
    const order = this.order;
    const to =
      from + 1 < order.length && compare(order[from + 1]!, client) < 0
        ? this.upperBound(client, from + 1, order.length) - 1
        : this.upperBound(client, 0, from);
    if (to === from) return;
    order.splice(from, 1);
    order.splice(to, 0, client);
  }

  /** Index in `order` of an active client whose key is still the one it was positioned with. */
  private indexOf(client: Client): number {
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(this.order[mid]!, client) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (this.order[lo] === client) return lo;
    // Unreachable while keys only change through reposition(); kept as a safety net.
    return this.order.indexOf(client);
  }

  /** First index in [lo, hi) whose client sorts after `client`. */
  private upperBound(client: Client, lo: number, hi: number): number {
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(this.order[mid]!, client) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private link(client: Client): void {
    this.order.splice(this.upperBound(client, 0, this.order.length), 0, client);
  }

  private unlink(client: Client): void {
    this.order.splice(this.indexOf(client), 1);
  }
}

function assertWeight(weight: number): void {
  if (!(weight > 0) || !Number.isFinite(weight)) throw new RangeError(`weight must be a positive number, got ${weight}`);
}
