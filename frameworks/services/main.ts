/**
 * The services framework's composition root: a store, the scheduler on the SDK driver, and the
 * `ServicesApi` the HTTP API, proxy and CLI are written against.
 *
 * ```ts
 * const services = await startServicesFramework({ master: 'ws://127.0.0.1:5050', store: 'redis://127.0.0.1:6379' });
 * await services.api.putApp(parseAppDefinition('id: /web\ninstances: 3\ncmd: python3 -m http.server $PORT0\nports: [{}]'));
 * ```
 *
 * Restarting with the same store resumes the same framework (its id is stored), re-adopts the
 * running tasks through reconciliation and carries on with the deployments in progress.
 */
import { pino, type Logger } from 'pino';
import { startOnStore } from '../sdk/index.ts';
import { ServicesScheduler, type ServicesSchedulerOptions } from './scheduler.ts';
import type { ServicesApi } from './service-api.ts';

export interface ServicesFrameworkOptions {
  /** The master's base URL, e.g. ws://127.0.0.1:5050. */
  master: string;
  /** A store URL (see openStore): a directory, file://…, redis://… or memory:. The namespace is the framework name. @default '.agora' (→ .agora/services) */
  store?: string;
  /** The framework name, also the store namespace. @default 'services' */
  name?: string;
  logger?: Logger;
  /** The services HTTP API's URL, given to tasks as AGORA_SERVICES_API. */
  apiUrl?: string;
  /** Tuning, mostly for tests. */
  scheduler?: Partial<Pick<ServicesSchedulerOptions, 'declineRefuseSeconds' | 'reconcileTimeoutMs' | 'failoverTimeoutMs' | 'reconnect' | 'role'>>;
}

export interface ServicesFramework {
  api: ServicesApi;
  frameworkId: string;
  /** Sets AGORA_SERVICES_API for tasks launched from now on, once the HTTP API listens. */
  setApiUrl(url: string): void;
  /** Disconnects and closes the store; the tasks keep running for the failover timeout (a restart resumes them). */
  close(): Promise<void>;
}

export async function startServicesFramework(options: ServicesFrameworkOptions): Promise<ServicesFramework> {
  const name = options.name ?? 'services';
  const logger = options.logger ?? pino({ name: 'agora-services', level: process.env.AGORA_LOG_LEVEL ?? 'info' }, pino.destination(2));
  const { scheduler, frameworkId, close } = await startOnStore(
    options.store ?? '.agora',
    name,
    (store) =>
      new ServicesScheduler({
        master: options.master,
        store,
        name,
        logger,
        ...(options.apiUrl !== undefined && { apiUrl: options.apiUrl }),
        ...options.scheduler,
      }),
  );
  return {
    api: scheduler,
    frameworkId,
    setApiUrl(url) {
      scheduler.apiUrl = url;
    },
    close,
  };
}
