import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { pino } from 'pino';
import {
  Endpoint,
  ErrorCode,
  Inbound,
  PROTOCOL_VERSION,
  WsConnection,
  type Offer,
  type SchedulerCall,
  type SchedulerEvent,
  type TaskStatus,
} from '../../master/protocol/index.ts';
import {
  InvalidCallError,
  MasterRefusedError,
  NotConnectedError,
  SchedulerDriver,
  type SchedulerDriverOptions,
  type SchedulerHandlers,
} from '../../frameworks/sdk/index.ts';

// ---------------------------------------------------------------------------------------------
// A scripted master: a real WebSocket server speaking the protocol, whose answers the test decides.

type CallOf<T extends SchedulerCall['type']> = Extract<SchedulerCall, { type: T }>;

class Session {
  readonly calls: SchedulerCall[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: { test: (call: SchedulerCall) => boolean; resolve: (call: SchedulerCall) => void }[] = [];

  constructor(readonly conn: WsConnection<SchedulerCall, SchedulerEvent>) {
    this.closed = new Promise((resolve) => {
      conn.onClose = (code, reason) => resolve({ code, reason });
    });
  }

  receive(call: SchedulerCall): void {
    this.calls.push(call);
    this.waiters = this.waiters.filter((waiter) => {
      if (!waiter.test(call)) return true;
      waiter.resolve(call);
      return false;
    });
  }

  /** Resolves with the first call of this type (already received or still to come) that matches. */
  waitFor<T extends SchedulerCall['type']>(type: T, match: (call: CallOf<T>) => boolean = () => true): Promise<CallOf<T>> {
    const test = (call: SchedulerCall) => call.type === type && match(call as CallOf<T>);
    const seen = this.calls.find(test);
    if (seen) return Promise.resolve(seen as CallOf<T>);
    return new Promise((resolve) => this.waiters.push({ test, resolve: (call) => resolve(call as CallOf<T>) }));
  }

  callsOf<T extends SchedulerCall['type']>(type: T): CallOf<T>[] {
    return this.calls.filter((call) => call.type === type) as CallOf<T>[];
  }

  send(event: SchedulerEvent): void {
    this.conn.send(event);
  }
}

interface ScriptedMasterOptions {
  /** The answer to SUBSCRIBE on the n-th connection (0-based); undefined leaves it unanswered. */
  onSubscribe?: (call: CallOf<'SUBSCRIBE'>, connectionIndex: number) => SchedulerEvent | undefined;
}

class ScriptedMaster {
  readonly sessions: Session[] = [];
  private sessionWaiters: ((session: Session) => void)[] = [];

  private constructor(
    private readonly wss: WebSocketServer,
    readonly url: string,
  ) {}

  static async start(options: ScriptedMasterOptions = {}): Promise<ScriptedMaster> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: Endpoint.scheduler });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    const address = wss.address();
    if (address === null || typeof address === 'string') throw new Error('expected a TCP address');
    const master = new ScriptedMaster(wss, `ws://127.0.0.1:${address.port}`);
    const onSubscribe =
      options.onSubscribe ??
      ((call: CallOf<'SUBSCRIBE'>): SchedulerEvent => ({
        type: 'SUBSCRIBED',
        frameworkId: call.framework.id ?? 'fw-1',
        heartbeatIntervalMs: 60_000,
        masterId: 'master-1',
      }));
    wss.on('connection', (ws) => {
      const conn = new WsConnection<SchedulerCall, SchedulerEvent>(ws, Inbound.schedulerCalls);
      const session = new Session(conn);
      const index = master.sessions.length;
      master.sessions.push(session);
      conn.onMessage = (call) => {
        session.receive(call);
        if (call.type === 'SUBSCRIBE') {
          const answer = onSubscribe(call, index);
          if (answer) session.send(answer);
        }
      };
      for (const waiter of master.sessionWaiters.splice(0)) waiter(session);
    });
    return master;
  }

  /** The n-th connection (0-based), once it is open. */
  session(index: number): Promise<Session> {
    const existing = this.sessions[index];
    if (existing) return Promise.resolve(existing);
    return new Promise((resolve) => {
      const check = () => {
        const session = this.sessions[index];
        if (session) resolve(session);
        else this.sessionWaiters.push(check);
      };
      this.sessionWaiters.push(check);
    });
  }

  async close(): Promise<void> {
    for (const client of this.wss.clients) client.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}

// ---------------------------------------------------------------------------------------------

const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setUp(
  handlers: SchedulerHandlers = {},
  masterOptions: ScriptedMasterOptions = {},
  driverOptions: Partial<SchedulerDriverOptions> = {},
): Promise<{ master: ScriptedMaster; driver: SchedulerDriver }> {
  const master = await ScriptedMaster.start(masterOptions);
  const driver = new SchedulerDriver({
    master: master.url,
    framework: { name: 'test-framework', role: 'batch' },
    handlers,
    logger: silent,
    reconnect: { initialMs: 10, maxMs: 50 },
    ...driverOptions,
  });
  cleanups.push(() => master.close());
  cleanups.push(() => driver.stop());
  return { master, driver };
}

/** A promise with its resolver, for handlers the test wants to hold open or observe. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function offer(id: string, agentId = 'agent-1'): Offer {
  return {
    id,
    frameworkId: 'fw-1',
    agentId,
    hostname: 'host-1',
    role: 'batch',
    resources: { cpus: 4, mem: 1024, ports: [[31000, 31009]] },
    attributes: {},
  };
}

function status(taskId: string, fields: Partial<TaskStatus> = {}): TaskStatus {
  return { taskId, frameworkId: 'fw-1', agentId: 'agent-1', state: 'RUNNING', source: 'AGENT', uuid: `uuid-${taskId}`, timestampMs: 1, ...fields };
}

describe('SchedulerDriver', () => {
  it('subscribes with the protocol version and framework info, and resolves start() with the framework id', async () => {
    const { master, driver } = await setUp();
    await expect(driver.start()).resolves.toBe('fw-1');
    expect(driver.frameworkId).toBe('fw-1');
    expect(driver.state).toBe('subscribed');
    const subscribe = await (await master.session(0)).waitFor('SUBSCRIBE');
    expect(subscribe.protocolVersion).toBe(PROTOCOL_VERSION);
    expect(subscribe.framework).toMatchObject({ name: 'test-framework', role: 'batch', failoverTimeoutMs: 60_000 });
    expect(subscribe.framework.id).toBeUndefined();
  });

  it('resumes a framework when given its id', async () => {
    const { master, driver } = await setUp({}, {}, { framework: { name: 'resumed', id: 'fw-old', failoverTimeoutMs: 5000 } });
    await expect(driver.start()).resolves.toBe('fw-old');
    const subscribe = await (await master.session(0)).waitFor('SUBSCRIBE');
    expect(subscribe.framework).toMatchObject({ id: 'fw-old', failoverTimeoutMs: 5000 });
  });

  it('reconciles implicitly (RECONCILE with no tasks) right after SUBSCRIBED', async () => {
    const { master, driver } = await setUp();
    await driver.start();
    const session = await master.session(0);
    const reconcile = await session.waitFor('RECONCILE');
    expect(reconcile.tasks).toEqual([]);
    expect(session.calls.map((call) => call.type).slice(0, 2)).toEqual(['SUBSCRIBE', 'RECONCILE']);
  });

  it('acknowledges an update only after its handler has finished', async () => {
    const handlerDone = deferred();
    let finished = false;
    const { master, driver } = await setUp({
      async update() {
        await handlerDone.promise;
        finished = true;
      },
    });
    await driver.start();
    const session = await master.session(0);
    session.send({ type: 'UPDATE', status: status('t1') });
    // Let the update reach the handler, then let the handler finish.
    await session.waitFor('RECONCILE');
    setTimeout(() => handlerDone.resolve(), 20);
    const ack = await session.waitFor('ACKNOWLEDGE');
    expect(finished).toBe(true);
    expect(ack).toEqual({ type: 'ACKNOWLEDGE', agentId: 'agent-1', taskId: 't1', uuid: 'uuid-t1' });
  });

  it('does not acknowledge an update whose handler threw, nor one without a uuid', async () => {
    const seen: string[] = [];
    const { master, driver } = await setUp({
      update(update) {
        seen.push(update.taskId);
        if (update.taskId === 'bad') throw new Error('scheduler bug');
      },
    });
    await driver.start();
    const session = await master.session(0);
    session.send({ type: 'UPDATE', status: status('bad') });
    session.send({ type: 'UPDATE', status: status('from-master', { source: 'MASTER', uuid: undefined }) });
    session.send({ type: 'UPDATE', status: status('good') });
    await session.waitFor('ACKNOWLEDGE', (ack) => ack.taskId === 'good');
    expect(seen).toEqual(['bad', 'from-master', 'good']);
    expect(session.callsOf('ACKNOWLEDGE').map((ack) => ack.taskId)).toEqual(['good']);
  });

  it('does not acknowledge twice when the handler acknowledged itself', async () => {
    const { master, driver } = await setUp({
      update(update, d) {
        d.acknowledge(update);
      },
    });
    await driver.start();
    const session = await master.session(0);
    session.send({ type: 'UPDATE', status: status('t1') });
    session.send({ type: 'UPDATE', status: status('t2') });
    await session.waitFor('ACKNOWLEDGE', (ack) => ack.taskId === 't2');
    expect(session.callsOf('ACKNOWLEDGE').map((ack) => ack.taskId)).toEqual(['t1', 't2']);
  });

  it('runs handlers one event at a time, in order, awaiting each', async () => {
    const log: string[] = [];
    const { master, driver } = await setUp({
      async update(update) {
        log.push(`start ${update.taskId}`);
        await new Promise((resolve) => setTimeout(resolve, update.taskId === 't1' ? 30 : 1));
        log.push(`end ${update.taskId}`);
      },
      failure(agentId) {
        log.push(`failure ${agentId}`);
      },
    });
    await driver.start();
    const session = await master.session(0);
    session.send({ type: 'UPDATE', status: status('t1') });
    session.send({ type: 'FAILURE', agentId: 'agent-9' });
    session.send({ type: 'UPDATE', status: status('t2') });
    await session.waitFor('ACKNOWLEDGE', (ack) => ack.taskId === 't2');
    expect(log).toEqual(['start t1', 'end t1', 'failure agent-9', 'start t2', 'end t2']);
  });

  it('declines the offers the handler neither accepted nor declined, with declineRefuseSeconds', async () => {
    const { master, driver } = await setUp(
      {
        async offers(offers, d) {
          await new Promise((resolve) => setTimeout(resolve, 5));
          const [first, second] = offers;
          d.launch(first!, [{ taskId: 'task-1', resources: { cpus: 1, mem: 64 }, command: { value: 'true' } }]);
          d.decline(second!.id, 30);
        },
      },
      {},
      { declineRefuseSeconds: 7 },
    );
    await driver.start();
    const session = await master.session(0);
    session.send({ type: 'OFFERS', offers: [offer('o1'), offer('o2'), offer('o3'), offer('o4')] });
    const accept = await session.waitFor('ACCEPT');
    expect(accept.offerIds).toEqual(['o1']);
    expect(accept.operations).toEqual([
      { type: 'LAUNCH', tasks: [{ taskId: 'task-1', resources: { cpus: 1, mem: 64 }, command: { value: 'true' } }] },
    ]);
    const leftover = await session.waitFor('DECLINE', (decline) => decline.offerIds.includes('o3'));
    expect(leftover).toEqual({ type: 'DECLINE', offerIds: ['o3', 'o4'], filters: { refuseSeconds: 7 } });
    const declines = session.callsOf('DECLINE');
    expect(declines).toContainEqual({ type: 'DECLINE', offerIds: ['o2'], filters: { refuseSeconds: 30 } });
    expect(declines.flatMap((decline) => decline.offerIds)).not.toContain('o1');
  });

  it('declines every offer when there is no offers handler, or when it throws', async () => {
    const { master, driver } = await setUp({}, {}, { declineRefuseSeconds: 3 });
    await driver.start();
    const session = await master.session(0);
    session.send({ type: 'OFFERS', offers: [offer('o1'), offer('o2')] });
    expect(await session.waitFor('DECLINE')).toEqual({ type: 'DECLINE', offerIds: ['o1', 'o2'], filters: { refuseSeconds: 3 } });

    const second = await setUp({
      offers() {
        throw new Error('placement bug');
      },
    });
    await second.driver.start();
    const secondSession = await second.master.session(0);
    secondSession.send({ type: 'OFFERS', offers: [offer('o9')] });
    expect((await secondSession.waitFor('DECLINE')).offerIds).toEqual(['o9']);
  });

  it('does not decline an offer rescinded while the handler ran', async () => {
    const { master, driver } = await setUp({
      async offers() {
        await session0.waitFor('RECONCILE');
        await rescinded.promise;
      },
      rescinded(offerId) {
        log.push(offerId);
      },
    });
    const log: string[] = [];
    const rescinded = deferred();
    const startP = driver.start();
    const session0 = await master.session(0);
    await startP;
    session0.send({ type: 'OFFERS', offers: [offer('o1'), offer('o2')] });
    session0.send({ type: 'RESCIND', offerId: 'o1' });
    setTimeout(() => rescinded.resolve(), 20);
    const decline = await session0.waitFor('DECLINE');
    expect(decline.offerIds).toEqual(['o2']);
  });

  it('reconnects after the master drops the socket and re-subscribes with the same framework id', async () => {
    const disconnected = deferred<string>();
    const subscribedIds: string[] = [];
    const { master, driver } = await setUp({
      subscribed(frameworkId) {
        subscribedIds.push(frameworkId);
      },
      disconnected(reason) {
        disconnected.resolve(reason);
      },
    });
    await driver.start();
    const first = await master.session(0);
    first.conn.terminate();
    await disconnected.promise;
    const second = await master.session(1);
    const subscribe = await second.waitFor('SUBSCRIBE');
    expect(subscribe.framework.id).toBe('fw-1');
    expect((await second.waitFor('RECONCILE')).tasks).toEqual([]);
    expect(driver.frameworkId).toBe('fw-1');
    await vi_waitUntil(() => subscribedIds.length === 2);
    expect(subscribedIds).toEqual(['fw-1', 'fw-1']);
  });

  it('drops a silent master after three heartbeat intervals and reconnects', async () => {
    const disconnected = deferred<string>();
    const { master, driver } = await setUp(
      { disconnected: (reason) => disconnected.resolve(reason) },
      {
        onSubscribe: (call) => ({ type: 'SUBSCRIBED', frameworkId: call.framework.id ?? 'fw-hb', heartbeatIntervalMs: 30, masterId: 'm' }),
      },
    );
    await driver.start();
    // The scripted master never sends HEARTBEAT.
    expect(await disconnected.promise).toMatch(/heartbeat timeout/);
    const second = await master.session(1);
    expect((await second.waitFor('SUBSCRIBE')).framework.id).toBe('fw-hb');
  });

  it('keeps a connection whose master heartbeats', async () => {
    let disconnects = 0;
    const { master, driver } = await setUp(
      { disconnected: () => void disconnects++ },
      { onSubscribe: () => ({ type: 'SUBSCRIBED', frameworkId: 'fw-1', heartbeatIntervalMs: 100, masterId: 'm' }) },
    );
    await driver.start();
    const session = await master.session(0);
    const timer = setInterval(() => session.send({ type: 'HEARTBEAT' }), 10);
    // Long enough for the watchdog (3 × 100 ms) to have fired had the heartbeats not reset it.
    await new Promise((resolve) => setTimeout(resolve, 400));
    clearInterval(timer);
    expect(disconnects).toBe(0);
    expect(master.sessions).toHaveLength(1);
  });

  it('throws NotConnectedError for calls while reconnecting, and drops acknowledgements', async () => {
    const disconnected = deferred<string>();
    const { master, driver } = await setUp(
      { disconnected: (reason) => disconnected.resolve(reason) },
      {
        // Answer the first SUBSCRIBE only, so the driver stays unsubscribed after the drop.
        onSubscribe: (_call, index) => (index === 0 ? { type: 'SUBSCRIBED', frameworkId: 'fw-1', heartbeatIntervalMs: 60_000, masterId: 'm' } : undefined),
      },
    );
    await driver.start();
    (await master.session(0)).conn.terminate();
    await disconnected.promise;
    await (await master.session(1)).waitFor('SUBSCRIBE');
    expect(driver.state).not.toBe('subscribed');
    const calls: [string, () => void][] = [
      ['ACCEPT', () => driver.accept(['o1'], [])],
      ['ACCEPT', () => driver.launch(offer('o1'), [{ taskId: 't', resources: {}, command: { value: 'true' } }])],
      ['DECLINE', () => driver.decline('o1')],
      ['KILL', () => driver.kill('t1')],
      ['REVIVE', () => driver.revive()],
      ['SUPPRESS', () => driver.suppress()],
      ['RECONCILE', () => driver.reconcile()],
    ];
    for (const [type, call] of calls) {
      let thrown: unknown;
      try {
        call();
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(NotConnectedError);
      expect((thrown as NotConnectedError).call).toBe(type);
      expect((thrown as Error).message).toMatch(/reconnecting/);
    }
    expect(() => driver.acknowledge(status('t1'))).not.toThrow();
  });

  it('rejects start() with a clear error when the master answers SUBSCRIBE with ERROR, and does not reconnect', async () => {
    const errors: { code: string; message: string }[] = [];
    const { master, driver } = await setUp(
      { error: (error) => void errors.push(error) },
      { onSubscribe: () => ({ type: 'ERROR', code: ErrorCode.PROTOCOL_VERSION, message: 'protocol version 1 is not supported' }) },
    );
    const failure = await driver.start().then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(MasterRefusedError);
    expect((failure as MasterRefusedError).code).toBe('PROTOCOL_VERSION');
    expect((failure as Error).message).toMatch(/refused.*PROTOCOL_VERSION.*protocol version 1 is not supported/);
    expect(driver.state).toBe('stopped');
    await vi_waitUntil(() => errors.length === 1);
    expect(errors[0]).toEqual({ code: 'PROTOCOL_VERSION', message: 'protocol version 1 is not supported' });
    await (await master.session(0)).closed;
    expect(master.sessions).toHaveLength(1);
  });

  it('stops for good when the master says FRAMEWORK_REMOVED and closes with 1008', async () => {
    const errors: string[] = [];
    const { master, driver } = await setUp({ error: (error) => void errors.push(error.code) });
    await driver.start();
    const session = await master.session(0);
    session.send({ type: 'ERROR', code: ErrorCode.FRAMEWORK_REMOVED, message: 'framework fw-1 was removed' });
    session.conn.close(1008, 'framework removed');
    await vi_waitUntil(() => errors.length > 0);
    expect(errors).toEqual(['FRAMEWORK_REMOVED']);
    expect(driver.state).toBe('stopped');
    expect(() => driver.revive()).toThrow(/stopped/);
  });

  it('treats a bare 1008 close as a refusal', async () => {
    const errors: { code: string; message: string }[] = [];
    const { master, driver } = await setUp({ error: (error) => void errors.push(error) });
    await driver.start();
    (await master.session(0)).conn.close(1008, 'unknown framework id fw-1');
    await vi_waitUntil(() => errors.length > 0);
    expect(errors[0]).toEqual({ code: 'CLOSED_BY_MASTER', message: 'unknown framework id fw-1' });
    expect(driver.state).toBe('stopped');
  });

  it('passes non-fatal errors to the error handler and stays subscribed', async () => {
    const errors: string[] = [];
    const { master, driver } = await setUp({ error: (error) => void errors.push(error.code) });
    await driver.start();
    (await master.session(0)).send({ type: 'ERROR', code: ErrorCode.INVALID_OFFER, message: 'offer o1 is gone' });
    await vi_waitUntil(() => errors.length > 0);
    expect(errors).toEqual(['INVALID_OFFER']);
    expect(driver.state).toBe('subscribed');
  });

  it('sends KILL, REVIVE, SUPPRESS and explicit RECONCILE as given', async () => {
    const { master, driver } = await setUp();
    await driver.start();
    const session = await master.session(0);
    driver.kill('t1', { agentId: 'agent-1', gracePeriodMs: 500 });
    driver.kill('t2');
    driver.suppress();
    driver.revive();
    driver.reconcile([{ taskId: 't1', agentId: 'agent-1' }]);
    await session.waitFor('RECONCILE', (call) => call.tasks.length === 1);
    expect(session.calls.slice(2)).toEqual([
      { type: 'KILL', taskId: 't1', agentId: 'agent-1', killPolicy: { gracePeriodMs: 500 } },
      { type: 'KILL', taskId: 't2' },
      { type: 'SUPPRESS' },
      { type: 'REVIVE' },
      { type: 'RECONCILE', tasks: [{ taskId: 't1', agentId: 'agent-1' }] },
    ]);
  });

  it('rejects a malformed call locally with InvalidCallError naming the field', async () => {
    const { driver } = await setUp();
    await driver.start();
    expect(() => driver.launch(offer('o1'), [{ taskId: 'bad id/with slash', resources: {}, command: { value: 'true' } }])).toThrow(InvalidCallError);
    expect(() => driver.launch(offer('o1'), [{ taskId: 'bad id/with slash', resources: {}, command: { value: 'true' } }])).toThrow(/taskId/);
  });

  it('sends TEARDOWN before closing when stopped with teardown', async () => {
    const { master, driver } = await setUp();
    await driver.start();
    const session = await master.session(0);
    await driver.stop({ teardown: true });
    await session.waitFor('TEARDOWN');
    expect((await session.closed).code).toBe(1000);
    expect(driver.state).toBe('stopped');
    expect(() => driver.revive()).toThrow(NotConnectedError);
  });
});

/** Polls a condition each macrotask; the vitest timeout bounds it. */
async function vi_waitUntil(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 2));
}
