/**
 * The CLI and the hello example as a newcomer uses them: real processes, real ports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agora, removeDir, tempDir, waitFor, runScript } from './helpers.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));


describe('agora up, the hello example and agora state', () => {
  let up: ChildProcess;
  let upLog = '';
  let url = '';
  let dir = '';

  beforeAll(async () => {
    dir = tempDir('agora-up-');
    up = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bin/agora.ts'), 'up', '--port', '0', '--services-port', '0', '--batch-port', '0', '--dir', dir], { cwd: ROOT, env: { ...process.env, AGORA_LOG_LEVEL: 'info' } });
    up.stderr!.on('data', (d: Buffer) => (upLog += d.toString()));
    url = await waitFor(() => /master listening on (http:\/\/[\d.:]+)/.exec(upLog)?.[1], 'agora up to print its address', 20_000);
    await waitFor(() => upLog.includes('dev cluster up'), 'the agent to register', 20_000);
  });
  afterAll(async () => {
    if (up.exitCode === null) up.kill('SIGKILL');
    removeDir(dir);
  });

  it('prints where the master listens and keeps state under its directory', () => {
    expect(upLog).toMatch(/dev cluster up: master http:\/\/127\.0\.0\.1:\d+, one agent \(cpus:/);
    expect(existsSync(join(dir, 'agent'))).toBe(true);
  });

  it('runs the services framework and prints its API address', async () => {
    const api = /services API (http:\/\/[\d.:]+)/.exec(upLog)?.[1];
    expect(api).toBeDefined();
    const list = await agora(['app', 'list', '--api', api!, '--json']);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual([]);
    expect(existsSync(join(dir, 'services'))).toBe(true); // its store lives in the state directory
  });

  it('runs the batch framework, prints its API address, and agora job runs a command on the cluster', async () => {
    const api = /batch API (http:\/\/[\d.:]+)/.exec(upLog)?.[1];
    expect(api).toBeDefined();
    const list = await agora(['job', 'list', '--api', api!, '--json']);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual([]);
    const run = await agora(['job', 'run', '--api', api!, '--cpus', '0.1', '--mem', '32', '--wait', '--json', '--', 'echo', 'hello']);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ state: 'succeeded', counts: { succeeded: 1 } });
    expect(existsSync(join(dir, 'batch'))).toBe(true); // its store lives in the state directory too
  });

  it('runs the hello example to success, printing each status update', async () => {
    const ws = url.replace('http', 'ws');
    const result = await runScript('examples/hello/main.ts', ['--master', ws, '--tasks', '3']);
    expect(result.code).toBe(0);
    for (const i of [1, 2, 3]) {
      expect(result.stdout).toContain(`hello-${i} RUNNING`);
      expect(result.stdout).toContain(`hello-${i} FINISHED`);
    }
    expect(result.stdout).toContain('all 3 tasks finished');
  });

  it('exits non-zero from the hello example when a task fails', async () => {
    const result = await runScript('examples/hello/main.ts', ['--master', url.replace('http', 'ws'), '--tasks', '2', '--cmd', 'exit 3']);
    expect(result.code).not.toBe(0);
    expect(result.stdout).toMatch(/hello-1 FAILED \(.*code 3/);
  });

  it('shows agents, frameworks and tasks as tables, and as JSON with --json', async () => {
    const table = await agora(['state', '--master', url, '--all']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^AGENTS \(1\)\nID\s+HOSTNAME\s+STATUS\s+CPUS\s+MEM\s+DISK\s+TASKS\n\S+\s+\S+\s+ACTIVE\s+0\/\d+/m);
    expect(table.stdout).toMatch(/FRAMEWORKS \(2\)\nID\s+NAME\s+ROLE\s+STATUS\s+TASKS\s+SHARE\n/); // agora up's services and batch frameworks
    expect(table.stdout).toMatch(/\n\S+\s+services\s+\*\s+ACTIVE/);
    expect(table.stdout).toMatch(/\n\S+\s+batch\s+\*\s+ACTIVE/);
    expect(table.stdout).toMatch(/COMPLETED TASKS \(\d+\)[\s\S]*hello-1\s+\S+\s+\S+\s+FINISHED/);
    const json = await agora(['state', '--master', url, '--json']);
    expect(json.code).toBe(0);
    const state = JSON.parse(json.stdout) as { agents: { status: string }[]; completedFrameworks: { name: string }[] };
    expect(state.agents[0]!.status).toBe('ACTIVE');
    expect(state.completedFrameworks.map((f) => f.name)).toContain('hello');
  });

  it('stops cleanly on Ctrl-C', async () => {
    up.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => (up.exitCode !== null ? resolve(up.exitCode) : up.on('exit', resolve)));
    expect(code).toBe(0);
    expect(upLog).toMatch(/SIGINT: stopping/);
  });
});

describe('agora CLI errors and help', () => {
  it('explains an unreachable master', async () => {
    const result = await agora(['state', '--master', 'http://127.0.0.1:1']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/cannot reach the master at http:\/\/127\.0\.0\.1:1\/state/);
  });

  it('names a malformed --resources flag', async () => {
    const result = await agora(['agent', '--master', 'ws://127.0.0.1:1', '--resources', 'cpus:lots', '--work-dir', tempDir()]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--resources "cpus:lots".*expected a non-negative number/);
  });

  it('has --help for every command', async () => {
    const commands = ['master', 'agent', 'up', 'services', 'batch', 'state', 'job', 'job run'];
    const results = await Promise.all(commands.map((command) => agora([...command.split(' '), '--help'], 60_000)));
    commands.forEach((command, i) => {
      expect(results[i]!.code).toBe(0);
      expect(results[i]!.stdout).toContain(`Usage: agora ${command}`);
    });
  }, 90_000);
});
