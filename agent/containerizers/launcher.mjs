/**
 * The process containerizer's launcher in JavaScript: a small, long-lived child of the agent that
 * spawns tasks for it (what `mesos-containerizer launch` is to a Mesos agent). The agent uses
 * launcher.c, compiled, when it can (a fork from it is far cheaper, and it joins the tasks' cgroups
 * itself); this one when there is no C compiler.
 *
 * Why: on Linux a spawn forks the calling process, and a fork costs in proportion to the caller's
 * memory. The agent (tsx, zod, ws, pino, …) is well over 100 MB, so each spawn blocked its main
 * thread for milliseconds; this process is plain JavaScript with no dependencies (no tsx), a
 * fraction of that size, so it forks several times faster and off the agent's thread.
 *
 * Protocol: launcher.c's (see there). stdin (from the agent): records whose fields each end with a
 * NUL byte, counts in decimal:
 *   B n KEY=VALUE...                        the environment every task starts from (sent once, first)
 *   S id cwd file argc argv... envc KEY=VALUE... joinc path... ready
 *                                           spawn: the env entries are added to the base; argv[0]
 *                                           is ignored (node makes it `file`); stdout/stderr go to
 *                                           cwd/stdout and cwd/stderr (appended); ready 1: fd 3 is
 *                                           a pipe the task writes one byte to once it is inside its
 *                                           cgroup; joinc must be 0 (this one cannot join cgroups
 *                                           between fork and exec: that request gets an error)
 * A malformed record ends this process (exit status 2).
 * stdout (to the agent):
 *   {"up": true}                            once, at start: nothing was spawned before it
 *   {"id", "pid", "startTime"}              spawned (startTime: field 22 of /proc/<pid>/stat)
 *   {"id", "started": true}                 the ready byte arrived (only for ready: true)
 *   {"id", "exit": code, "signal": name}    the task's main process ended
 *   {"id", "error": message}                it could not be started (no pid was reported)
 *
 * Tasks are detached (a process group and session of their own), so they outlive this process: when
 * the agent goes (stdin ends) the launcher exits and leaves them running, as the agent does; when the
 * launcher dies, the agent watches the tasks it had spawned by pid. When a task's main process ends,
 * whatever is left in its process group is SIGKILLed before its exit goes out (as launcher.c does).
 */
import { spawn } from 'node:child_process';
import { close, constants, fstat, open, readFileSync } from 'node:fs';
import path from 'node:path';

/** Tasks whose stdout/stderr are being opened at once: bounds the descriptors each fork copies. */
const MAX_OPENING = 8;

let base = {};
let opening = 0;
const openQueue = [];

// Written synchronously (stdout is a pipe: synchronous on Linux), so a pid is on its way to the
// agent before anything else happens here, even if this process is killed right after.
function send(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

function startTime(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined; // not Linux; the agent checks liveness by signal 0 then
  }
}

function whenOpenSlot(run) {
  if (opening < MAX_OPENING) {
    opening++;
    run();
  } else openQueue.push(run);
}

function releaseOpenSlot() {
  const next = openQueue.shift();
  if (next) next();
  else opening--;
}

/** Opens (creating) the sandbox's stdout and stderr for appending, off the main thread. */
function openLogs(sandbox, callback) {
  let pending = 2;
  let failure = null;
  const fds = [-1, -1];
  const done = (index) => (error, fd) => {
    if (error) failure ??= error;
    else fds[index] = fd;
    if (--pending > 0) return;
    if (failure) {
      for (const fd of fds) if (fd >= 0) close(fd, () => {});
      callback(failure);
    } else callback(null, fds[0], fds[1]);
  };
  openRegular(path.join(sandbox, 'stdout'), done(0));
  openRegular(path.join(sandbox, 'stderr'), done(1));
}

// Appending, created if need be, and only a regular file: a symlink or a FIFO left in a reused
// sandbox must neither redirect the output nor hold the open (a FIFO without a reader is ENXIO).
const APPEND_REGULAR = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK;

function openRegular(file, callback) {
  open(file, APPEND_REGULAR, 0o666, (error, fd) => {
    if (error) return callback(error);
    fstat(fd, (statError, stats) => {
      if (!statError && stats.isFile()) return callback(null, fd);
      close(fd, () => {});
      callback(statError ?? Object.assign(new Error(`${file} is not a regular file`), { code: 'EINVAL' }));
    });
  });
}

function launch(request) {
  const { id, file, args, cwd, env, join, ready } = request;
  if (join.length > 0) {
    send({ id, error: `cannot join cgroup ${join[0]}: launcher.mjs cannot join cgroups (the native launcher does)` });
    return;
  }
  whenOpenSlot(() =>
    openLogs(cwd, (error, stdout, stderr) => {
      releaseOpenSlot();
      if (error) {
        send({ id, error: `cannot open the task's stdout/stderr in ${cwd}: ${error.message}` });
        return;
      }
      try {
        spawnTask(id, file, args, cwd, { ...base, ...env }, ready, stdout, stderr);
      } finally {
        close(stdout, () => {});
        close(stderr, () => {});
      }
    }),
  );
}

function spawnTask(id, file, args, cwd, env, ready, stdout, stderr) {
  let child;
  try {
    child = spawn(file, args, { cwd, env, stdio: ready ? ['ignore', stdout, stderr, 'pipe'] : ['ignore', stdout, stderr], detached: true });
  } catch (error) {
    send({ id, error: `cannot start the task: ${error.message}` });
    return;
  }
  const pid = child.pid;
  if (pid === undefined) {
    // spawn reports ENOENT/EACCES asynchronously and never emits 'exit'.
    child.once('error', (error) => send({ id, error: `cannot start ${file}: ${error.message}` }));
    return;
  }
  send({ id, pid, startTime: startTime(pid) });
  child.on('error', () => {
    // Errors after a successful spawn are not task outcomes; 'exit' reports those.
  });
  // The container ends with its task: what is left in its group goes (before 'close', which a
  // leftover holding the ready pipe would otherwise hold back).
  child.once('exit', () => {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // ESRCH: nothing was left
    }
  });
  const pipe = ready ? child.stdio[3] : null;
  if (pipe) {
    pipe.once('data', () => send({ id, started: true }));
    pipe.on('error', () => {});
    // 'close' comes after the pipe's data, so `started` always precedes `exit`.
    child.once('close', (code, signal) => send({ id, exit: code, signal }));
  } else {
    child.once('exit', (code, signal) => send({ id, exit: code, signal }));
  }
}

function malformed(what) {
  process.stderr.write(`agora launcher: malformed input: ${what}\n`);
  process.exit(2);
}

/** Reads the record at `start` of `buffer`: {fields, end}, or undefined when it is not complete yet. */
function readRecord(buffer, start) {
  let at = start;
  const field = () => {
    const nul = buffer.indexOf(0, at);
    if (nul < 0) return undefined;
    const text = buffer.toString('utf8', at, nul);
    at = nul + 1;
    return text;
  };
  const count = () => {
    const text = field();
    if (text === undefined) return undefined;
    if (!/^\d{1,7}$/.test(text)) malformed(`a count is a number (got "${text.slice(0, 40)}")`);
    return Number(text);
  };
  const list = () => {
    const n = count();
    if (n === undefined) return undefined;
    const items = [];
    for (let i = 0; i < n; i++) {
      const item = field();
      if (item === undefined) return undefined;
      items.push(item);
    }
    return items;
  };
  const type = field();
  if (type === undefined) return undefined;
  if (type === 'B') {
    const entries = list();
    return entries && { record: { base: environment(entries) }, end: at };
  }
  if (type !== 'S') malformed(`a record starts with B or S (got "${type.slice(0, 40)}")`);
  const id = field();
  if (id === undefined) return undefined;
  if (!/^\d{1,15}$/.test(id)) malformed(`the spawn id is a number (got "${id.slice(0, 40)}")`);
  const cwd = field();
  const file = cwd === undefined ? undefined : field();
  const argv = file === undefined ? undefined : list();
  const env = argv && list();
  const join = env && list();
  const ready = join && field();
  if (ready === undefined) return undefined;
  if (ready !== '0' && ready !== '1') malformed(`ready is 0 or 1 (got "${ready.slice(0, 40)}")`);
  if (argv.length === 0) malformed('argv[0] is required');
  return { record: { id: Number(id), cwd, file, args: argv.slice(1), env: environment(env), join, ready: ready === '1' }, end: at };
}

function environment(entries) {
  const env = {};
  for (const entry of entries) {
    const eq = entry.indexOf('=');
    if (eq < 0) env[entry] = '';
    else env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

// The agent's end of the pipes going away means the agent is gone: leave, and leave the tasks.
process.stdout.on('error', () => process.exit(0));
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
// Signals meant for the agent's terminal or group (Ctrl-C) are the agent's to act on; this process
// follows the agent by its stdin.
process.on('SIGINT', () => {});
process.on('SIGHUP', () => {});

// Records are cut from the bytes (a chunk may end inside a UTF-8 character), then decoded.
let pending = Buffer.alloc(0);
process.stdin.on('data', (chunk) => {
  pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
  let start = 0;
  for (let read; (read = readRecord(pending, start)) !== undefined; start = read.end) {
    if (read.record.base) base = read.record.base;
    else launch(read.record);
  }
  pending = pending.subarray(start);
});

send({ up: true });
