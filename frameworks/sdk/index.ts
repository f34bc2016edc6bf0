/**
 * The Agora scheduler SDK: what a framework is written against.
 *
 * ```ts
 * import { SchedulerDriver, firstFit, isTerminal, type TaskSpec } from './frameworks/sdk/index.ts';
 *
 * const pending: TaskSpec[] = [1, 2, 3].map((i) => ({
 *   taskId: `hello-${i}`,
 *   resources: { cpus: 0.1, mem: 32 },
 *   command: { value: 'echo hello from $AGORA_TASK_ID' },
 * }));
 * let running = pending.length;
 *
 * const driver = new SchedulerDriver({
 *   master: 'ws://127.0.0.1:5050',
 *   framework: { name: 'hello', role: '*' },
 *   handlers: {
 *     offers(offers, driver) {
 *       const { launches, unplaced } = firstFit(pending, offers);
 *       for (const { offer, tasks } of launches) driver.launch(offer, tasks);
 *       pending.splice(0, pending.length, ...unplaced);
 *       if (pending.length === 0) driver.suppress(); // offers not launched on are declined for you
 *     },
 *     async update(status, driver) {
 *       console.log(status.taskId, status.state);    // acknowledged for you once this returns
 *       if (isTerminal(status.state) && --running === 0) await driver.stop({ teardown: true });
 *     },
 *   },
 * });
 * console.log('framework id', await driver.start());
 * ```
 *
 * The driver keeps the connection alive (reconnect with backoff, heartbeat watchdog, framework
 * failover with the same id), reconciles on every (re)subscribe, acknowledges updates after your
 * handler returns and declines offers you left unused. Handlers run one event at a time, in order.
 * Schedulers must be idempotent: updates are delivered at least once.
 *
 * To unit-test a scheduler without sockets, see `./testing.ts` (an in-memory master and agents).
 */
export {
  SchedulerDriver,
  DEFAULT_DECLINE_REFUSE_SECONDS,
  DEFAULT_FAILOVER_TIMEOUT_MS,
  type SchedulerDriverOptions,
  type SchedulerHandlers,
} from './driver.ts';
export { DriverStoppedError, InvalidCallError, MasterRefusedError, NotConnectedError, type DriverState } from './errors.ts';
export * from './resources.ts';
export {
  ErrorCode,
  FRAMEWORK_CAPABILITIES,
  isTerminal,
  PROTOCOL_VERSION,
  Reason,
  TASK_STATES,
  TERMINAL_STATES,
  idSchema,
  type CommandInfo,
  type Connection,
  type ContainerInfo,
  type Filters,
  type FrameworkInfo,
  type HealthCheck,
  type KillPolicy,
  type Offer,
  type Operation,
  type SchedulerCall,
  type SchedulerEvent,
  type TaskInfo,
  type TaskState,
  type TaskStatus,
} from '../../master/protocol/index.ts';
export {
  FileStore,
  InvalidKeyError,
  InvalidValueError,
  MemoryStore,
  openStore,
  startOnStore,
  RedisStore,
  StoreBrokenError,
  StoreClosedError,
  StoreLockedError,
  StoreUrlError,
  VersionConflictError,
  type OpenStoreOptions,
  type RedisStoreOptions,
  type Store,
  type StoreEntry,
  type StoreWrite,
  type WriteOptions,
} from './store/index.ts';
export { readTaskFile, masterHttpUrl, MasterUnreachableError, TaskFileError, TASK_FILES, MAX_FILE_READ_BYTES, type ReadTaskFileOptions, type TaskFileChunk, type TaskFileName } from './task-files.ts';
