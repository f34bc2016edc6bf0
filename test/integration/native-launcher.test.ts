/**
 * The task launchers on their own: building the native one (agent/containerizers/native-launcher.ts:
 * compiled once per source into a cache keyed by its hash; any failure means launcher.mjs), and the
 * wire protocol both launchers speak (records of NUL-terminated fields in, JSON lines out), driven
 * directly, without a containerizer.
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { NATIVE_LAUNCHER_SOURCE, nativeLauncher } from '../../agent/containerizers/native-launcher.ts';
import { ProcessContainerizer } from '../../agent/containerizers/process.ts';
import { isTerminal } from '../../master/protocol/messages.ts';
import type { ContainerStatus } from '../../agent/containerizers/containerizer.ts';
import { waitFor } from './helpers.ts';
import { alive, cgroupsUsable, compilerAvailable, launcherKinds, nativeSkipReason, type LauncherKind, launcherScratch } from './launcher-kinds.ts';

const { root, leftovers } = launcherScratch('agora-native-launcher-');

const LAUNCHER_MJS = fileURLToPath(new URL('../../agent/containerizers/launcher.mjs', import.meta.url));


describe.skipIf(!compilerAvailable)('building the native launcher', () => {
  it('compiles cleanly under -std=c99 -Wall -Wextra -Werror (and -pedantic)', async () => {
    const out = path.join(root, 'strict-launcher');
    await promisify(execFile)('cc', ['-std=c99', '-pedantic', '-O2', '-Wall', '-Wextra', '-Werror', '-o', out, NATIVE_LAUNCHER_SOURCE]);
    expect(statSync(out).mode & 0o111).not.toBe(0);
  });

  it('caches the binary under a hash of its source: reused as it is, rebuilt when the source changes', async () => {
    const cacheDir = path.join(root, 'cache-rebuild');
    const source = path.join(root, 'launcher-copy.c');
    copyFileSync(NATIVE_LAUNCHER_SOURCE, source);
    const first = await nativeLauncher({ source, cacheDir });
    if (!('path' in first)) throw new Error(first.unavailable);
    expect(path.dirname(first.path)).toBe(cacheDir);
    expect(path.basename(first.path)).toMatch(/^launcher-[0-9a-f]{16}$/);
    const builtAt = statSync(first.path).mtimeMs;

    // Same source: the same file, not compiled again.
    expect(await nativeLauncher({ source, cacheDir })).toEqual(first);
    expect(statSync(first.path).mtimeMs).toBe(builtAt);

    // Another source: another hash, another binary.
    writeFileSync(source, `${readFileSync(source, 'utf8')}\n/* changed */\n`);
    const second = await nativeLauncher({ source, cacheDir });
    if (!('path' in second)) throw new Error(second.unavailable);
    expect(second.path).not.toBe(first.path);
    expect(existsSync(second.path)).toBe(true);
    // The build of the old source is gone, and nothing half-made is left behind.
    expect(readdirSync(cacheDir)).toEqual([path.basename(second.path)]);
  });

  it('builds once for callers asking at the same time', async () => {
    const cacheDir = path.join(root, 'cache-concurrent');
    const results = await Promise.all([nativeLauncher({ cacheDir }), nativeLauncher({ cacheDir }), nativeLauncher({ cacheDir })]);
    expect(new Set(results.map((r) => ('path' in r ? r.path : r.unavailable))).size).toBe(1);
    expect(readdirSync(cacheDir)).toHaveLength(1);
  });

  it('says why there is none: a compile error, no compiler, an unusable cache directory', async () => {
    const broken = path.join(root, 'broken.c');
    writeFileSync(broken, 'int main(void) { return oops; }\n');
    const compileError = await nativeLauncher({ source: broken, cacheDir: path.join(root, 'cache-broken') });
    expect(compileError).toEqual({ unavailable: expect.stringMatching(/could not compile .*broken\.c: .*oops/s) });
    expect(readdirSync(path.join(root, 'cache-broken'))).toEqual([]);

    expect(await nativeLauncher({ cacheDir: path.join(root, 'cache-none'), compilers: ['no-such-cc-agora'] })).toEqual({
      unavailable: 'no C compiler found (tried no-such-cc-agora)',
    });

    const file = path.join(root, 'a-file');
    writeFileSync(file, '');
    expect(await nativeLauncher({ cacheDir: path.join(file, 'cache') })).toEqual({ unavailable: expect.stringMatching(/^cannot create .*a-file\/cache: .*ENOTDIR/) });
  });

  it('when it cannot be built, the containerizer says so once and spawns through launcher.mjs', async () => {
    const broken = path.join(root, 'broken2.c');
    writeFileSync(broken, 'this is not C\n');
    const warnings: string[] = [];
    const containerizer = new ProcessContainerizer({ cgroups: false, nativeLauncher: { source: broken, cacheDir: path.join(root, 'cache-fallback') }, warn: (m) => warnings.push(m) });
    await containerizer.init();
    const sandbox = path.join(root, 'sandbox-fallback');
    mkdirSync(sandbox);
    const ended = new Promise<ContainerStatus>((resolve) => containerizer.launch({ frameworkId: 'fw', task: { taskId: 't', resources: {}, command: { value: 'echo hi' } }, sandbox }, (s) => isTerminal(s.state) && resolve(s)));
    expect(await ended).toMatchObject({ state: 'FINISHED' });
    expect(readFileSync(path.join(sandbox, 'stdout'), 'utf8')).toBe('hi\n');
    expect(containerizer.launcherKind).toBe('node');
    expect(warnings).toEqual([expect.stringMatching(/^process containerizer: native launcher unavailable \(.*could not compile .*broken2\.c: .*\); using launcher\.mjs$/s)]);
    containerizer.close();
  });
});

/** A launcher driven over its pipes: records in, JSON lines out. */
class Driver {
  readonly child: ChildProcessWithoutNullStreams;
  readonly messages: Record<string, unknown>[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr = '';
  private partial = '';

  constructor(file: string, args: string[]) {
    this.child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdin.on('error', () => {});
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => {
      const lines = (this.partial + chunk).split('\n');
      this.partial = lines.pop()!;
      for (const line of lines) this.messages.push(JSON.parse(line) as Record<string, unknown>);
    });
    this.child.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  write(data: string | Buffer): void {
    this.child.stdin.write(data);
  }

  /** Messages about one spawn id. */
  of(id: number): Record<string, unknown>[] {
    return this.messages.filter((m) => m.id === id);
  }

  /** Ends its stdin (the agent went away) and waits for it to exit. */
  end(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.child.stdin.end();
    return this.exited;
  }

  async until(id: number, key: string): Promise<Record<string, unknown>> {
    await waitFor(() => this.of(id).some((m) => key in m), `message ${key} for spawn ${id} (${this.stderr})`);
    return this.of(id).find((m) => key in m)!;
  }
}

function record(...fields: (string | number)[]): string {
  return `${fields.join('\0')}\0`;
}

/** `S` record: argv[0] is the file. */
function spawnRecord(id: number, cwd: string, argv: string[], { env = [] as string[], join = [] as string[], ready = false } = {}): string {
  return record('S', id, cwd, argv[0]!, argv.length, ...argv, env.length, ...env, join.length, ...join, ready ? 1 : 0);
}

async function startDriver(kind: LauncherKind): Promise<Driver> {
  if (kind === 'node') return new Driver(process.execPath, [LAUNCHER_MJS]);
  const built = await nativeLauncher();
  if (!('path' in built)) throw new Error(built.unavailable);
  return new Driver(built.path, []);
}

/** A launcher whose tasks start from this process's PATH (the `B` record most tests send first). */
async function startDriverWithPath(kind: LauncherKind): Promise<Driver> {
  const driver = await startDriver(kind);
  driver.write(record('B', 1, `PATH=${process.env.PATH}`));
  return driver;
}

describe.each(launcherKinds)('the launcher protocol (%s)', (kind) => {
  const sandbox = path.join(root, `protocol-${kind}`);
  mkdirSync(sandbox, { recursive: true });

  it('says it is up, takes records in pieces, reports pids, exit codes and signals, and exits 0 when its stdin ends', async () => {
    const driver = await startDriver(kind);
    driver.write(record('B', 2, `PATH=${process.env.PATH}`, 'FROM_BASE=base'));
    // Split inside a UTF-8 character, and between fields.
    const first = Buffer.from(spawnRecord(1, sandbox, ['sh', '-c', 'echo "$FROM_BASE $FROM_TASK é"; exit 7'], { env: ['FROM_TASK=task'] }));
    const cut = first.indexOf(Buffer.from('é')) + 1;
    driver.write(first.subarray(0, cut));
    await new Promise((resolve) => setTimeout(resolve, 30));
    driver.write(first.subarray(cut));
    driver.write(spawnRecord(2, sandbox, ['sh', '-c', 'kill -TERM $$']) + spawnRecord(3, sandbox, ['sleep', '30']));

    expect(await driver.until(1, 'exit')).toEqual({ id: 1, exit: 7, signal: null });
    expect(driver.messages[0]).toEqual({ up: true });
    const pid1 = driver.of(1)[0]!;
    expect(pid1).toEqual({ id: 1, pid: expect.any(Number), startTime: expect.stringMatching(/^\d+$/) });
    expect(readFileSync(path.join(sandbox, 'stdout'), 'utf8')).toBe('base task é\n');
    expect(await driver.until(2, 'exit')).toEqual({ id: 2, exit: null, signal: 'SIGTERM' });

    const { pid } = await driver.until(3, 'pid');
    leftovers.push(pid as number);
    process.kill(pid as number, 'SIGKILL');
    expect(await driver.until(3, 'exit')).toEqual({ id: 3, exit: null, signal: 'SIGKILL' });

    driver.write(spawnRecord(4, sandbox, ['sleep', '30']));
    const survivor = (await driver.until(4, 'pid')).pid as number;
    leftovers.push(survivor);
    expect(await driver.end()).toEqual({ code: 0, signal: null });
    expect(alive(survivor)).toBe(true);
    // In a session and process group of its own.
    const fields = readFileSync(`/proc/${survivor}/stat`, 'utf8').split(') ')[1]!.split(' ');
    expect([fields[2], fields[3]]).toEqual([String(survivor), String(survivor)]);
    process.kill(-survivor, 'SIGKILL');
  });

  it('with a ready pipe, reports started on its byte, and the exit only after it', async () => {
    const driver = await startDriverWithPath(kind);
    driver.write(spawnRecord(1, sandbox, ['sh', '-c', 'sleep 0.1; echo >&3; exec 3>&-; exit 4'], { ready: true }));
    // No byte at all: just the exit.
    driver.write(spawnRecord(2, sandbox, ['sh', '-c', 'exec 3>&-; exit 5'], { ready: true }));
    expect(await driver.until(1, 'exit')).toEqual({ id: 1, exit: 4, signal: null });
    expect(driver.of(1).map((m) => Object.keys(m)[1])).toEqual(['pid', 'started', 'exit']);
    expect(await driver.until(2, 'exit')).toEqual({ id: 2, exit: 5, signal: null });
    expect(driver.of(2).map((m) => Object.keys(m)[1])).toEqual(['pid', 'exit']);
    await driver.end();
  });

  it('ends what a task left in its process group as its main process ends, so its exit goes out', async () => {
    const driver = await startDriverWithPath(kind);
    // The leftover holds the ready pipe (fd 3) open: were it left alive, the exit would wait for it.
    driver.write(spawnRecord(1, sandbox, ['sh', '-c', 'sleep 30 & echo $! > leftover-1.pid; exit 6'], { ready: true }));
    driver.write(spawnRecord(2, sandbox, ['sh', '-c', 'sleep 30 & echo $! > leftover-2.pid; exit 0']));
    expect(await driver.until(1, 'exit')).toEqual({ id: 1, exit: 6, signal: null });
    expect(await driver.until(2, 'exit')).toEqual({ id: 2, exit: 0, signal: null });
    for (const n of [1, 2]) {
      const leftover = Number(readFileSync(path.join(sandbox, `leftover-${n}.pid`), 'utf8'));
      leftovers.push(leftover);
      await waitFor(() => !alive(leftover), `the leftover ${leftover} of task ${n} to be killed`);
    }
    await driver.end();
  });

  it('answers what cannot be started with an error for that id and goes on', async () => {
    const driver = await startDriverWithPath(kind);
    driver.write(spawnRecord(1, sandbox, ['no-such-program-agora']));
    driver.write(spawnRecord(2, path.join(sandbox, 'missing'), ['true']));
    driver.write(spawnRecord(3, sandbox, ['true']));
    expect(await driver.until(1, 'error')).toEqual({ id: 1, error: expect.stringMatching(/^cannot start no-such-program-agora: .*ENOENT/) });
    expect(await driver.until(2, 'error')).toEqual({ id: 2, error: expect.stringMatching(/^cannot open the task's stdout\/stderr in .*missing: .*ENOENT/) });
    expect(await driver.until(3, 'exit')).toEqual({ id: 3, exit: 0, signal: null });
    await driver.end();
  });

  it('refuses a FIFO or a symlink in place of a sandbox\'s stdout, for that task only, without blocking the next', async () => {
    const driver = await startDriverWithPath(kind);
    const withFifo = path.join(sandbox, 'fifo-box');
    const withLink = path.join(sandbox, 'link-box');
    mkdirSync(withFifo, { recursive: true });
    mkdirSync(withLink, { recursive: true });
    await promisify(execFile)('mkfifo', [path.join(withFifo, 'stdout')]); // nobody ever reads it
    const target = path.join(sandbox, 'not-yours');
    writeFileSync(target, '');
    symlinkSync(target, path.join(withLink, 'stdout'));
    driver.write(spawnRecord(1, withFifo, ['true']));
    driver.write(spawnRecord(2, withLink, ['echo', 'redirected?']));
    driver.write(spawnRecord(3, sandbox, ['true']));
    expect(await driver.until(1, 'error')).toEqual({ id: 1, error: expect.stringMatching(/^cannot open the task's stdout\/stderr in .*fifo-box: /) });
    expect(await driver.until(2, 'error')).toEqual({ id: 2, error: expect.stringMatching(/^cannot open the task's stdout\/stderr in .*link-box: .*ELOOP/) });
    expect(await driver.until(3, 'exit')).toEqual({ id: 3, exit: 0, signal: null });
    expect(readFileSync(target, 'utf8')).toBe('');
    await driver.end();
  });

  it('reports the pid of every task it forked before it leaves when its stdin ends, with each one\'s own start time', async () => {
    const driver = await startDriverWithPath(kind);
    const box = path.join(sandbox, 'eof-box');
    mkdirSync(box, { recursive: true });
    const marks = path.join(box, 'marks');
    // Tasks that end at once (the pid may be read after the child is gone), then the end of stdin.
    const n = 60;
    driver.write(Array.from({ length: n }, (_, i) => spawnRecord(i + 1, box, ['sh', '-c', `echo ${i + 1} >> ${marks}`])).join(''));
    expect(await driver.end()).toEqual({ code: 0, signal: null });
    const reported = driver.messages.filter((m) => 'pid' in m).map((m) => m.id as number).sort((a, b) => a - b);
    const marked = () => (existsSync(marks) ? readFileSync(marks, 'utf8').split('\n').filter(Boolean).map(Number).sort((a, b) => a - b) : []);
    // The last tasks may still be finishing; then nothing more appears (a task nobody heard of would).
    await waitFor(() => marked().length >= reported.length, 'every reported task to leave its mark');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const ran = marked();
    // Nothing ran unreported (the native launcher forks every request it read: all of them).
    expect(ran).toEqual(reported);
    if (kind === 'native') expect(reported).toHaveLength(n);
    for (const m of driver.messages.filter((m) => 'pid' in m)) expect(m.startTime).toMatch(/^\d+$/);
  });

  it('exits with status 2 on a malformed record', async () => {
    const driver = await startDriver(kind);
    driver.write(record('S', 'x1', sandbox));
    expect(await driver.exited).toEqual({ code: 2, signal: null });
    expect(driver.stderr).toMatch(/malformed/);
  });

  if (kind === 'node') {
    it('refuses to join cgroups (it cannot between fork and exec)', async () => {
      const driver = await startDriver(kind);
      driver.write(record('B', 0));
      driver.write(spawnRecord(1, sandbox, ['true'], { join: ['/sys/fs/cgroup/x/cgroup.procs'] }));
      expect(await driver.until(1, 'error')).toEqual({ id: 1, error: expect.stringMatching(/^cannot join cgroup \/sys\/fs\/cgroup\/x\/cgroup\.procs: launcher\.mjs cannot/) });
      await driver.end();
    });
  } else {
    it('fails a well-framed but unusable request (an empty program) for that task only', async () => {
      const driver = await startDriverWithPath(kind);
      driver.write(record('S', 1, sandbox, '', 1, '', 0, 0, 0));
      driver.write(spawnRecord(2, sandbox, ['true']));
      expect(await driver.until(1, 'error')).toEqual({ id: 1, error: 'cannot start the task: the program is empty' });
      expect(await driver.until(2, 'exit')).toEqual({ id: 2, exit: 0, signal: null });
      await driver.end();
    });

    it('goes on spawning while a child is still on its way to exec (here: blocked joining), and writes "0" to join', async () => {
      const driver = await startDriverWithPath(kind);
      // A FIFO stands in for cgroup.procs: the child blocks opening it until someone reads.
      const fifo = path.join(sandbox, 'procs.fifo');
      await promisify(execFile)('mkfifo', [fifo]);
      driver.write(spawnRecord(1, sandbox, ['true'], { join: [fifo] }));
      driver.write(spawnRecord(2, sandbox, ['sh', '-c', 'exit 3']));
      expect(await driver.until(2, 'exit')).toEqual({ id: 2, exit: 3, signal: null });
      expect(driver.of(1)).toEqual([]);
      expect(readFileSync(fifo, 'utf8')).toBe('0');
      expect(await driver.until(1, 'exit')).toEqual({ id: 1, exit: 0, signal: null });
      expect(driver.of(1).map((m) => Object.keys(m)[1])).toEqual(['pid', 'started', 'exit']);
      await driver.end();
    });

    it('joins the cgroups given before exec, or says which one it could not join', async (context) => {
      const driver = await startDriverWithPath(kind);
      driver.write(spawnRecord(1, sandbox, ['true'], { join: [path.join(sandbox, 'no-such-cgroup', 'cgroup.procs')] }));
      expect(await driver.until(1, 'error')).toEqual({ id: 1, error: expect.stringMatching(/^cannot join cgroup .*no-such-cgroup\/cgroup\.procs: No such file or directory \(ENOENT\)$/) });
      if (!cgroupsUsable) {
        driver.child.stdin.end();
        context.skip('needs root with a writable cgroup hierarchy');
      }
      const v1 = existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes');
      const dir = path.join(v1 ? '/sys/fs/cgroup/memory' : '/sys/fs/cgroup', `agora-launcher-test-${process.pid}`);
      mkdirSync(dir);
      try {
        const out = path.join(sandbox, 'stdout');
        writeFileSync(out, '');
        driver.write(spawnRecord(2, sandbox, ['cat', '/proc/self/cgroup'], { join: [path.join(dir, 'cgroup.procs')] }));
        expect(await driver.until(2, 'exit')).toEqual({ id: 2, exit: 0, signal: null });
        // The pid, then started (it was in its cgroup before exec), then the exit.
        expect(driver.of(2).map((m) => Object.keys(m)[1])).toEqual(['pid', 'started', 'exit']);
        expect(readFileSync(out, 'utf8')).toContain(`/agora-launcher-test-${process.pid}\n`);
      } finally {
        driver.child.stdin.end();
        await waitFor(() => {
          try {
            rmdirSync(dir);
            return true;
          } catch {
            return false;
          }
        }, `${dir} to be removable`);
      }
    });
  }
});

const skipped = nativeSkipReason;
if (skipped) {
  describe('the native launcher', () => {
    it.skip(skipped, () => {});
  });
}
