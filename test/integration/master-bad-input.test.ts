/**
 * Bad input never crashes the master, never corrupts its state and never costs anyone a task:
 * each case gets a clear ERROR (or a close with 1007/1008/1009) and the master keeps serving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.ts';
import type { MasterServer } from '../../master/http/server.ts';
import { Endpoint, PROTOCOL_VERSION } from '../../master/protocol/index.ts';
import { RawClient, startAgent, startMaster } from './helpers.ts';

let master: MasterServer;
let agent: Agent;

beforeAll(async () => {
  master = await startMaster();
  agent = await startAgent(master, { resources: { cpus: 2, mem: 1024, disk: 1000 } });
});
afterAll(async () => {
  await agent?.stop({ killTasks: true });
  await master?.close();
});

async function scheduler(name = 'bad-input'): Promise<RawClient> {
  const client = await RawClient.connect(`${master.wsUrl}${Endpoint.scheduler}`);
  client.send({ type: 'SUBSCRIBE', protocolVersion: PROTOCOL_VERSION, framework: { name, failoverTimeoutMs: 0 } });
  await client.next('SUBSCRIBED');
  return client;
}

async function masterStillServes(): Promise<void> {
  const res = await fetch(`${master.url}/health`);
  expect(res.status).toBe(200);
  const client = await scheduler('still-serving');
  const offers = await client.next('OFFERS');
  expect((offers.offers as unknown[]).length).toBeGreaterThan(0);
  client.close();
}

describe('bad input from a scheduler', () => {
  it('closes with 1007 on undecodable bytes and keeps serving others', async () => {
    const client = await RawClient.connect(`${master.wsUrl}${Endpoint.scheduler}`);
    client.sendBytes(Buffer.from([0xc1, 0xc1, 0xc1])); // 0xc1 is never valid msgpack
    const error = await client.next('ERROR');
    expect(error.code).toBe('UNDECODABLE');
    expect((await client.waitClosed()).code).toBe(1007);
    await masterStillServes();
  });

  it('closes with 1007 on a text frame', async () => {
    const client = await RawClient.connect(`${master.wsUrl}${Endpoint.scheduler}`);
    client.sendBytes('{"type":"SUBSCRIBE"}');
    expect((await client.waitClosed()).code).toBe(1007);
  });

  it('answers an unknown type with an ERROR listing the known ones', async () => {
    const client = await RawClient.connect(`${master.wsUrl}${Endpoint.scheduler}`);
    client.send({ type: 'LAUNCH_ROCKETS' });
    const error = await client.next('ERROR');
    expect(error.code).toBe('UNKNOWN_TYPE');
    expect(error.message).toContain('LAUNCH_ROCKETS');
    expect(error.message).toContain('SUBSCRIBE');
    expect(client.closed).toBeUndefined();
    client.close();
  });

  it('names the missing or wrongly typed field', async () => {
    const client = await RawClient.connect(`${master.wsUrl}${Endpoint.scheduler}`);
    client.send({ type: 'SUBSCRIBE', protocolVersion: PROTOCOL_VERSION, framework: { name: 42 } });
    const error = await client.take('ERROR');
    expect(error.code).toBe('INVALID_MESSAGE');
    expect(error.message).toContain('SUBSCRIBE.framework.name');
    client.send({ type: 'SUBSCRIBE', protocolVersion: PROTOCOL_VERSION });
    expect((await client.take('ERROR')).message).toContain('SUBSCRIBE.framework');
    // Still usable afterwards.
    client.send({ type: 'SUBSCRIBE', protocolVersion: PROTOCOL_VERSION, framework: { name: 'fixed' } });
    await client.next('SUBSCRIBED');
    client.close();
  });

  it('closes with 1009 on an oversized frame', async () => {
    const client = await RawClient.connect(`${master.wsUrl}${Endpoint.scheduler}`);
    client.sendBytes(Buffer.alloc(2 * 1024 * 1024, 0x90));
    expect((await client.waitClosed()).code).toBe(1009);
    await masterStillServes();
  });

  it('refuses a call before SUBSCRIBE', async () => {
    const client = await RawClient.connect(`${master.wsUrl}${Endpoint.scheduler}`);
    client.send({ type: 'REVIVE' });
    const error = await client.next('ERROR');
    expect(error.code).toBe('NOT_SUBSCRIBED');
    expect(error.message).toMatch(/SUBSCRIBE first/);
    client.close();
  });

  it('refuses a second SUBSCRIBE on one connection', async () => {
    const client = await scheduler();
    client.send({ type: 'SUBSCRIBE', protocolVersion: PROTOCOL_VERSION, framework: { name: 'again' } });
    const error = await client.next('ERROR');
    expect(error.code).toBe('ALREADY_SUBSCRIBED');
    expect(error.message).toMatch(/new connection/);
    client.close();
  });

  it('refuses a protocol version it does not speak with 1008', async () => {
    const client = await RawClient.connect(`${master.wsUrl}${Endpoint.scheduler}`);
    client.send({ type: 'SUBSCRIBE', protocolVersion: 999, framework: { name: 'future' } });
    expect((await client.next('ERROR')).code).toBe('PROTOCOL_VERSION');
    expect((await client.waitClosed()).code).toBe(1008);
  });

  it('refuses an ACCEPT of an offer that is not yours or already used', async () => {
    const a = await scheduler('a');
    const offer = (await a.next('OFFERS')).offers as { id: string }[];
    const offerId = offer[0]!.id;
    const b = await scheduler('b');
    const task = { taskId: 'stolen', resources: { cpus: 0.1, mem: 32 }, command: { value: 'true' } };
    b.send({ type: 'ACCEPT', offerIds: [offerId], operations: [{ type: 'LAUNCH', tasks: [task] }] });
    const notYours = await b.next('ERROR');
    expect(notYours.code).toBe('INVALID_OFFER');
    expect(notYours.message).toContain('another framework');
    expect((await b.next('UPDATE')).status).toMatchObject({ taskId: 'stolen', state: 'DROPPED', reason: 'INVALID_OFFERS' });

    // The rightful owner's offer went back to the allocator: a declined-then-reused id is "not outstanding".
    a.send({ type: 'DECLINE', offerIds: [offerId], filters: { refuseSeconds: 0 } });
    a.send({ type: 'ACCEPT', offerIds: [offerId], operations: [{ type: 'LAUNCH', tasks: [{ ...task, taskId: 'late' }] }] });
    const used = await a.next('ERROR');
    expect(used.message).toMatch(/not outstanding/);
    a.close();
    b.close();
    await masterStillServes();
  });

  it('refuses a LAUNCH that asks for more than the offer holds, naming the shortfall', async () => {
    const client = await scheduler('greedy');
    const offers = (await client.next('OFFERS')).offers as { id: string; resources: { cpus: number } }[];
    const offer = offers[0]!;
    const ok = { taskId: 'fits', resources: { cpus: 0.5, mem: 32 }, command: { value: 'sleep 5' } };
    const big = { taskId: 'too-big', resources: { cpus: 64, mem: 32 }, command: { value: 'true' } };
    client.send({ type: 'ACCEPT', offerIds: [offer.id], operations: [{ type: 'LAUNCH', tasks: [ok, big] }] });
    const error = await client.next('ERROR');
    expect(error.code).toBe('INVALID_TASK');
    expect(error.message).toContain('too-big');
    expect(error.message).toMatch(/cpus: needs 64, has 1.5/);
    expect((await client.next('UPDATE', (m) => (m.status as { taskId: string }).taskId === 'too-big')).status).toMatchObject({ state: 'ERROR', reason: 'TASK_INVALID' });
    // The valid neighbour still launched.
    expect((await client.next('UPDATE', (m) => (m.status as { taskId: string; state: string }).taskId === 'fits' && (m.status as { state: string }).state === 'RUNNING')).status).toBeTruthy();
    client.send({ type: 'TEARDOWN' });
    await client.waitClosed();
  });
});

describe('bad input from an agent', () => {
  it('refuses a STATUS_UPDATE before REGISTER', async () => {
    const client = await RawClient.connect(`${master.wsUrl}${Endpoint.agent}`);
    client.send({ type: 'STATUS_UPDATE', status: { taskId: 't', frameworkId: 'f', agentId: 'a', state: 'RUNNING', source: 'AGENT', uuid: 'u', timestampMs: 1 } });
    expect((await client.next('ERROR')).code).toBe('NOT_REGISTERED');
    client.close();
  });

  it('names bad resources in a REGISTER', async () => {
    const client = await RawClient.connect(`${master.wsUrl}${Endpoint.agent}`);
    client.send({ type: 'REGISTER', protocolVersion: PROTOCOL_VERSION, hostname: 'h', resources: { cpus: -1 }, attributes: {}, tasks: [] });
    const error = await client.next('ERROR');
    expect(error.message).toContain('REGISTER.resources.cpus');
    client.close();
    const state = master.master.state();
    expect(state.agents.every((a) => a.hostname !== 'h')).toBe(true);
  });

  it('refuses unknown WebSocket paths before upgrading', async () => {
    await expect(RawClient.connect(`${master.wsUrl}/api/v1/nope`)).rejects.toThrow(/404/);
  });
});
