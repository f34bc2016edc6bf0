/**
 * Refuse filters (Mesos "offer filters"): after a framework declines resources on an agent with
 * `refuseSeconds`, it is not offered that agent's resources again while they are contained in what
 * it refused, until the filter expires. A larger set (something else was freed meanwhile) is
 * offered: the framework may want the new part.
 */

import { contains, type Resources } from '../protocol/resources.ts';

/** Mesos caps refuse_seconds at a year; so do we, so an absurd value cannot overflow a timer. */
export const MAX_REFUSE_SECONDS = 365 * 24 * 60 * 60;

export interface RefuseFilter {
  readonly frameworkId: string;
  readonly agentId: string;
  readonly resources: Resources;
  readonly expiresMs: number;
  /** False once revived, expired, or its framework or agent is gone; dead filters linger in the queue until popped. */
  live: boolean;
}

/** True while `filter` holds at `nowMs` and covers everything in `available`. */
export function blocks(filter: RefuseFilter, available: Resources, nowMs: number): boolean {
  return filter.live && filter.expiresMs > nowMs && contains(filter.resources, available);
}

/**
 * Min-heap of filters by expiry, with lazy deletion: killing a filter only clears `live`; dead
 * entries are dropped when they reach the top, and the heap is compacted when they dominate.
 */
export class FilterExpiryQueue {
  private heap: RefuseFilter[] = [];
  private liveCount = 0;

  get size(): number {
    return this.liveCount;
  }

  push(filter: RefuseFilter): void {
    this.heap.push(filter);
    this.liveCount++;
    this.siftUp(this.heap.length - 1);
  }

  kill(filter: RefuseFilter): void {
    if (!filter.live) return;
    filter.live = false;
    this.liveCount--;
    if (this.heap.length > 1024 && this.heap.length > 4 * this.liveCount) this.compact();
  }

  /** Earliest expiry among live filters (possibly already past). */
  peekExpiryMs(): number | undefined {
    this.dropDeadTop();
    return this.heap[0]?.expiresMs;
  }

  /** Removes and returns every live filter that has expired at `nowMs`, marking each dead. */
  popExpired(nowMs: number): RefuseFilter[] {
    const expired: RefuseFilter[] = [];
    for (;;) {
      this.dropDeadTop();
      const top = this.heap[0];
      if (top === undefined || top.expiresMs > nowMs) return expired;
      this.popTop();
      top.live = false;
      this.liveCount--;
      expired.push(top);
    }
  }

  private dropDeadTop(): void {
    while (this.heap.length > 0 && !this.heap[0]!.live) this.popTop();
  }

  private popTop(): void {
    const last = this.heap.pop()!;
    if (this.heap.length === 0) return;
    this.heap[0] = last;
    this.siftDown(0);
  }

  private compact(): void {
    this.heap = this.heap.filter((filter) => filter.live);
    for (let i = (this.heap.length >>> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  private siftUp(index: number): void {
    const heap = this.heap;
    const item = heap[index]!;
    while (index > 0) {
      const parent = (index - 1) >>> 1;
      if (heap[parent]!.expiresMs <= item.expiresMs) break;
      heap[index] = heap[parent]!;
      index = parent;
    }
    heap[index] = item;
  }

  private siftDown(index: number): void {
    const heap = this.heap;
    const item = heap[index]!;
    const n = heap.length;
    for (;;) {
      let child = 2 * index + 1;
      if (child >= n) break;
      if (child + 1 < n && heap[child + 1]!.expiresMs < heap[child]!.expiresMs) child++;
      if (heap[child]!.expiresMs >= item.expiresMs) break;
      heap[index] = heap[child]!;
      index = child;
    }
    heap[index] = item;
  }
}
