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
import { pino } from 'pino';
import type { FrameworkStartOptions, FrameworkTuning } from '../sdk/framework-options.ts';
import { startOnStore } from '../sdk/index.ts';
import { ServicesScheduler } from './scheduler.ts';
import type { ServicesApi } from './service-api.ts';

export interface ServicesFrameworkOptions extends FrameworkStartOptions {
  /** @default 'services' (the store: .agora/services) */
  name?: string;
  /** The services HTTP API's URL, given to tasks as AGORA_SERVICES_API. */
  apiUrl?: string;
  /** Tuning, mostly for tests. */
  scheduler?: FrameworkTuning;
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
