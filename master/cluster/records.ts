/**
 * The master's in-memory model: what it knows of agents, frameworks, tasks and offers.
 * Plain records; the master (master.ts) owns the rules for changing them.
 */
import type { Connection } from '../protocol/connection.ts';
import type {
  AgentMessage,
  FrameworkInfo,
  MasterToAgent,
  SchedulerCall,
  SchedulerEvent,
  TaskInfo,
  TaskState,
  TaskStatus,
} from '../protocol/messages.ts';
import type { Resources } from '../protocol/resources.ts';
import type { Timer } from '../timer.ts';

export type AgentConnection = Connection<AgentMessage, MasterToAgent>;
export type SchedulerConnection = Connection<SchedulerCall, SchedulerEvent>;

/**
 * ACTIVE: registered and connected. DISCONNECTED: its socket dropped; it has until the unreachable
 * deadline to come back. UNREACHABLE: its tasks were reported UNREACHABLE/LOST and its resources
 * left the allocator; it may still come back and re-register.
 */
export type AgentStatus = 'ACTIVE' | 'DISCONNECTED' | 'UNREACHABLE';

export interface AgentRecord {
  id: string;
  hostname: string;
  total: Resources;
  attributes: Record<string, string>;
  status: AgentStatus;
  conn: AgentConnection | undefined;
  registeredAtMs: number;
  unreachableTimer: Timer | undefined;
  tasks: Set<TaskRecord>;
  offers: Set<OfferRecord>;
}

/** ACTIVE: its scheduler is subscribed. DISCONNECTED: within its failover timeout. */
export type FrameworkStatus = 'ACTIVE' | 'DISCONNECTED';

export interface FrameworkRecord {
  id: string;
  info: FrameworkInfo;
  role: string;
  partitionAware: boolean;
  status: FrameworkStatus;
  conn: SchedulerConnection | undefined;
  registeredAtMs: number;
  failoverTimer: Timer | undefined;
  /** Live tasks and terminal tasks whose last update is not yet acknowledged, by task id. */
  tasks: Map<string, TaskRecord>;
  offers: Set<OfferRecord>;
}

export interface TaskRecord {
  frameworkId: string;
  agentId: string;
  info: TaskInfo;
  state: TaskState;
  /** The latest status, as last sent to the scheduler. */
  status: TaskStatus;
  /** The latest agent update the scheduler has not acknowledged yet; re-sent on re-subscribe. */
  unacknowledged: TaskStatus | undefined;
  /** Whether this task's resources are still counted by the allocator. */
  holdsResources: boolean;
  /** A KILL arrived while the agent was away; it is sent when the agent re-registers. */
  killPending: boolean;
  /** The latest status is the master's own and the scheduler was away; sent when it re-subscribes. */
  statusUndelivered: boolean;
  launchedAtMs: number;
}

export interface OfferRecord {
  id: string;
  frameworkId: string;
  agentId: string;
  resources: Resources;
  createdAtMs: number;
  timer: Timer | undefined;
}

/** A fixed-size history of ended things (completed tasks, removed frameworks) for /state. */
export class History<T> {
  /** A ring: `next` is where the next item goes; pushes are O(1) on the task-completion hot path. */
  private readonly items: T[] = [];
  private next = 0;
  /** The newest item per key, when a key function is given. */
  private readonly index = new Map<string, T>();
  constructor(
    private readonly capacity: number,
    private readonly keyOf?: (item: T) => string,
  ) {}
  push(item: T): void {
    if (this.items.length < this.capacity) this.items.push(item);
    else {
      const evicted = this.items[this.next]!;
      if (this.keyOf && this.index.get(this.keyOf(evicted)) === evicted) this.index.delete(this.keyOf(evicted));
      this.items[this.next] = item;
    }
    this.next = (this.next + 1) % this.capacity;
    if (this.keyOf) this.index.set(this.keyOf(item), item);
  }
  /** The newest item with this key (needs a key function). O(1). */
  get(key: string): T | undefined {
    return this.index.get(key);
  }
  /** Newest first. */
  find(predicate: (item: T) => boolean): T | undefined {
    const n = this.items.length;
    for (let i = 1; i <= n; i++) {
      const item = this.items[(this.next - i + n) % n]!;
      if (predicate(item)) return item;
    }
    return undefined;
  }
  /** Oldest first. */
  toArray(): T[] {
    return this.items.length < this.capacity ? this.items.slice() : [...this.items.slice(this.next), ...this.items.slice(0, this.next)];
  }
}
