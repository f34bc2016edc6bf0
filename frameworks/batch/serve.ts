/**
 * The batch framework as a running service: the scheduler and its HTTP API, wired together. What
 * `agora batch` and `agora up` run.
 */
import type { ServeFrameworkOptions, ServingFramework } from '../sdk/framework-options.ts';
import { DEFAULT_BATCH_PORT, startBatchHttp } from './http/index.ts';
import { startBatchFramework } from './main.ts';

/** The HTTP API listens on 127.0.0.1:5052 unless told otherwise. */
export type ServeBatchOptions = ServeFrameworkOptions;
export type ServingBatch = ServingFramework;

export async function serveBatch(options: ServeBatchOptions): Promise<ServingBatch> {
  const batch = await startBatchFramework({
    master: options.master,
    ...(options.store !== undefined && { store: options.store }),
    ...(options.logger && { logger: options.logger }),
    ...(options.role !== undefined && { scheduler: { role: options.role } }),
  });
  try {
    const http = await startBatchHttp({
      api: batch.api,
      host: options.host ?? '127.0.0.1',
      port: options.port ?? DEFAULT_BATCH_PORT,
      ...(options.logger && { logger: options.logger }),
    });
    return {
      url: http.url,
      frameworkId: batch.frameworkId,
      async close() {
        await http.close();
        await batch.close();
      },
    };
  } catch (error) {
    await batch.close();
    throw error;
  }
}
