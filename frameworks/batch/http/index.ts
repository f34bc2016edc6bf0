/**
 * The batch framework's HTTP edge: the REST API and event stream over a `BatchApi`, and the typed
 * client the CLI uses.
 *
 * ```ts
 * const batch = await startBatchFramework({ master: 'ws://127.0.0.1:5050' });
 * const http = await startBatchHttp({ api: batch.api, port: 5052 });
 * const client = new BatchClient(http.url);
 * await client.submitJob('id: hello\ncmd: echo hello from $AGORA_TASK_INDEX\ncompletions: 3\n');
 * const run = await client.triggerRun('hello');
 * const final = await followRun(client, run.id, (r) => console.log(r.state, r.counts));
 * const out = await client.taskLog(final.id, 0, { file: 'stdout' });
 * ```
 */
export { HttpError, MAX_BODY_BYTES } from '../../sdk/http/body.ts';
export {
  BatchClient,
  BatchHttpError,
  BatchUnreachableError,
  followRun,
  isRunEnded,
  type EventsOptions,
  type FollowRunOptions,
  type PutJobResult,
} from './client.ts';
export { DEFAULT_BATCH_PORT, ROUTES, startBatchHttp, type BatchHttp, type BatchHttpOptions } from './server.ts';
export { eventFromWire, eventToWire, jobViewFromWire, jobViewToWire, specFromWire, specToWire } from './wire.ts';
