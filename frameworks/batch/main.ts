/**
 * The batch framework's composition root: a store and the scheduler on the SDK driver, exposing
 * the `BatchApi` the HTTP API and CLI are written against.
 *
 * ```ts
 * const batch = await startBatchFramework({ master: 'ws://127.0.0.1:5050', store: 'redis://127.0.0.1:6379' });
 * await batch.api.putJob(parseJobSpec('id: render\ncmd: ./render.sh $AGORA_TASK_INDEX\narray: 0-99%10'));
 * const run = await batch.api.triggerRun('render');
 * ```
 *
 * Restarting with the same store resumes the same framework (its id is stored), reconciles every
 * attempt that was open and carries on with the runs in progress; schedules fire once per slot.
 */
import { pino } from 'pino';
import type { FrameworkStartOptions, FrameworkTuning } from '../sdk/framework-options.ts';
import { startOnStore } from '../sdk/index.ts';
import type { BatchApi } from './batch-api.ts';
import { BatchScheduler, type BatchSchedulerOptions } from './scheduler.ts';

export interface BatchFrameworkOptions extends FrameworkStartOptions {
  /** @default 'batch' (the store: .agora/batch) */
  name?: string;
  /** Tuning, mostly for tests. */
  scheduler?: FrameworkTuning & Partial<Pick<BatchSchedulerOptions, 'retention' | 'now'>>;
}

export interface BatchFramework {
  api: BatchApi;
  /** The scheduler itself, for tests that move a fake clock (`tick()`). */
  scheduler: BatchScheduler;
  frameworkId: string;
  /** Disconnects and closes the store; the tasks keep running for the failover timeout (a restart resumes them). */
  close(): Promise<void>;
}

export async function startBatchFramework(options: BatchFrameworkOptions): Promise<BatchFramework> {
  const name = options.name ?? 'batch';
  const logger = options.logger ?? pino({ name: 'agora-batch', level: process.env.AGORA_LOG_LEVEL ?? 'info' }, pino.destination(2));
  const started = await startOnStore(options.store ?? '.agora', name, (store) => new BatchScheduler({ master: options.master, store, name, logger, ...options.scheduler }));
  return { api: started.scheduler, scheduler: started.scheduler, frameworkId: started.frameworkId, close: started.close };
}
