/**
 * The batch framework as a running service: the scheduler and its HTTP API, wired together. What
 * `agora batch` and `agora up` run.
 */
import type { Logger } from 'pino';
import { DEFAULT_BATCH_PORT, startBatchHttp } from './http/index.ts';
import { startBatchFramework } from './main.ts';

export interface ServeBatchOptions {
  /** The master, e.g. ws://127.0.0.1:5050. */
  master: string;
  /** A store URL: a directory, file://…, redis://… or memory:. @default '.agora' */
  store?: string;
  /** Where the HTTP API listens. @default 127.0.0.1:5052 */
  host?: string;
  port?: number;
  /** The role the framework registers with; definitions naming another role are refused. @default '*' */
  role?: string;
  logger?: Logger;
}

export interface ServingBatch {
  /** The HTTP API, e.g. http://127.0.0.1:5052. */
  url: string;
  frameworkId: string;
  close(): Promise<void>;
}

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
