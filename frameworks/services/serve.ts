/**
 * The services framework as a running service: the scheduler, its HTTP API and the service-port
 * proxy, wired together. What `agora services` and `agora up` run.
 */
import type { Logger } from 'pino';
import { startServicesHttp } from './http/index.ts';
import { startServicesFramework } from './main.ts';
import { ServicePortProxy } from './proxy.ts';

export interface ServeServicesOptions {
  /** The master, e.g. ws://127.0.0.1:5050. */
  master: string;
  /** A store URL: a directory, file://…, redis://… or memory:. @default '.agora' */
  store?: string;
  /** Where the HTTP API listens. @default 127.0.0.1:5051 */
  host?: string;
  port?: number;
  /** The role the framework registers with; definitions naming another role are refused. @default '*' */
  role?: string;
  logger?: Logger;
}

export interface ServingServices {
  /** The HTTP API, e.g. http://127.0.0.1:5051. */
  url: string;
  frameworkId: string;
  close(): Promise<void>;
}

export async function serveServices(options: ServeServicesOptions): Promise<ServingServices> {
  const services = await startServicesFramework({
    master: options.master,
    ...(options.store !== undefined && { store: options.store }),
    ...(options.logger && { logger: options.logger }),
    ...(options.role !== undefined && { scheduler: { role: options.role } }),
  });
  try {
    const http = await startServicesHttp({
      api: services.api,
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 5051,
      ...(options.logger && { logger: options.logger }),
    });
    services.setApiUrl(http.url);
    const proxy = new ServicePortProxy({ api: services.api, host: options.host ?? '127.0.0.1', ...(options.logger && { logger: options.logger }) });
    await proxy.start().catch(async (error: unknown) => {
      await http.close();
      throw error;
    });
    return {
      url: http.url,
      frameworkId: services.frameworkId,
      async close() {
        await proxy.close();
        await http.close();
        await services.close();
      },
    };
  } catch (error) {
    await services.close();
    throw error;
  }
}
