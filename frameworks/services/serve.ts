/**
 * The services framework as a running service: the scheduler, its HTTP API and the service-port
 * proxy, wired together. What `agora services` and `agora up` run.
 */
import type { ServeFrameworkOptions, ServingFramework } from '../sdk/framework-options.ts';
import { startServicesHttp } from './http/index.ts';
import { startServicesFramework } from './main.ts';
import { ServicePortProxy } from './proxy.ts';

/** The HTTP API listens on 127.0.0.1:5051 unless told otherwise; service ports on the same host. */
export type ServeServicesOptions = ServeFrameworkOptions;
export type ServingServices = ServingFramework;

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
