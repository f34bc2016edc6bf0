/**
 * The options every framework built on the SDK shares — its scheduler, its composition root and
 * its served form — so the batch and services frameworks (and yours) read the same. Each extends
 * these with its own, and restates a default where its differs.
 */
import type { Logger } from 'pino';
import type { Store } from './store/index.ts';

/** A framework scheduler's options. */
export interface FrameworkSchedulerOptions {
  /** The master's base URL, e.g. ws://127.0.0.1:5050. */
  master: string;
  /** Where the framework keeps its state. The caller closes it. */
  store: Store;
  /** The framework's name, as the master shows it. */
  name?: string;
  /** @default '*' */
  role?: string;
  /** How long the master keeps the tasks while this scheduler is away. @default one week */
  failoverTimeoutMs?: number;
  /** The filter on offers left unused (a revive clears it). */
  declineRefuseSeconds?: number;
  /** After (re)subscribing, launch nothing until the master answered for every known task, or this long. @default 5000 */
  reconcileTimeoutMs?: number;
  reconnect?: { initialMs: number; maxMs: number };
  logger?: Logger;
}

/** The scheduler options a composition root passes through: tuning, mostly for tests. */
export type FrameworkTuning = Partial<Pick<FrameworkSchedulerOptions, 'declineRefuseSeconds' | 'reconcileTimeoutMs' | 'failoverTimeoutMs' | 'reconnect' | 'role'>>;

/** A composition root's options (`startBatchFramework`, `startServicesFramework`). */
export interface FrameworkStartOptions {
  /** The master's base URL, e.g. ws://127.0.0.1:5050. */
  master: string;
  /** A store URL (see openStore): a directory, file://…, redis://… or memory:. The namespace is the framework name. @default '.agora' (→ .agora/NAME) */
  store?: string;
  /** The framework name, also the store namespace. */
  name?: string;
  logger?: Logger;
}

/** A framework served with its HTTP API: what `agora batch`, `agora services` and `agora up` run. */
export interface ServeFrameworkOptions {
  /** The master, e.g. ws://127.0.0.1:5050. */
  master: string;
  /** A store URL: a directory, file://…, redis://… or memory:. @default '.agora' */
  store?: string;
  /** Where the HTTP API listens. @default 127.0.0.1 and the framework's port */
  host?: string;
  port?: number;
  /** The role the framework registers with; definitions naming another role are refused. @default '*' */
  role?: string;
  logger?: Logger;
}

export interface ServingFramework {
  /** The HTTP API, e.g. http://127.0.0.1:5052. */
  url: string;
  frameworkId: string;
  close(): Promise<void>;
}
