/*
 * The process containerizer's native task launcher: a small, long-lived child of the agent that
 * spawns tasks for it (what `mesos-containerizer launch` is to a Mesos agent). launcher.mjs does the
 * same job in JavaScript and is used when this cannot be compiled (native-launcher.ts builds it).
 *
 * Why C: a spawn forks the calling process, and a fork costs in proportion to the caller's memory.
 * Node's spawn from even a lean ~55 MB process costs ~1 ms of CPU per task; a fork from this tiny
 * process costs a fraction of that, and the task is cheaper too: this process joins the task's
 * cgroups itself between fork and exec, so no `sh` prelude has to run before the command.
 *
 * Protocol. stdin (from the agent) is a stream of records; every field ends with a NUL byte, counts
 * are decimal:
 *   B n KEY=VALUE...                       the base environment every task starts from (sent first;
 *                                          replaces the previous one)
 *   S id cwd file argc argv... envc KEY=VALUE... joinc path... ready
 *                                          spawn `file` (searched in the PATH of the task's
 *                                          environment, as node does) with argv (argv[0] included)
 *                                          in cwd, with the base environment plus/overridden by the
 *                                          entries given; stdout/stderr appended to cwd/stdout and
 *                                          cwd/stderr; before exec it writes "0" to each `path` (a
 *                                          cgroup.procs file: joins that cgroup); ready "1": fd 3 is
 *                                          a pipe the task writes one byte to once it has started
 *                                          (the shell prelude's way, when this launcher is not the
 *                                          one joining the cgroups), "0": no fd 3
 * A malformed record ends this process with exit status 2 (the agent copes with a dead launcher).
 * stdout (to the agent), one JSON object a line:
 *   {"up":true}                            once, at start: nothing was spawned before it
 *   {"id":N,"pid":P,"startTime":"T"}       spawned; T is field 22 of /proc/P/stat. The task has
 *                                          joined its cgroups and exec'd by then.
 *   {"id":N,"started":true}                right after the pid when it joined cgroups; with ready
 *                                          "1", when the task's ready byte arrives
 *   {"id":N,"exit":CODE|null,"signal":"SIGKILL"|null}
 *                                          the task's main process ended (after `started`, and
 *                                          after its ready pipe closed, for ready "1")
 *   {"id":N,"error":"message"}             it could not be started (no pid was reported)
 *
 * Tasks are detached (a session and process group of their own), so they outlive this process:
 * when the agent goes (stdin ends) this exits and leaves them running, as the agent does. When a
 * task's main process ends, whatever is left in its process group is SIGKILLed as it is reaped
 * (the container ends with its task), before its exit goes out: the agent need not do it after.
 *
 * Structure: one thread, one poll() loop over stdin, a SIGCHLD self-pipe, and per task a report
 * pipe (until it execs) and the ready pipe. A spawn opens the log files and forks; the child joins
 * the cgroups and execs while this loop takes the next request (joins can take milliseconds: waiting
 * on each would cap the spawn rate). The child's report pipe closes at its exec, or carries why it
 * could not get there: then the pid (or the error) goes out at once, before anything else.
 *
 * Build: cc -std=c99 -O2 -o launcher launcher.c (also clean under -Wall -Wextra -Werror).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Bounds on what one record may declare: far beyond any real task, small enough to catch garbage. */
#define MAX_COUNT 1000000
#define MAX_ID_DIGITS 15
/* A record larger than this is not a task the agent sent. */
#define MAX_INPUT ((size_t)1 << 30)
/* Where a program is searched when the task's environment has no PATH (libuv's default, as node). */
#define DEFAULT_PATH "/usr/bin:/bin"
#define EXEC_PATH_MAX 4096

/* ---------------------------------------------------------------------------------------------- */
/* Small helpers                                                                                  */

static void die(int status, const char *format, ...) {
  va_list args;
  fputs("agora launcher: ", stderr);
  va_start(args, format);
  vfprintf(stderr, format, args);
  va_end(args);
  fputc('\n', stderr);
  exit(status);
}

static void *xrealloc(void *pointer, size_t size) {
  void *grown = realloc(pointer, size ? size : 1);
  if (!grown) die(1, "out of memory");
  return grown;
}

/* Grows `array` (an lvalue of pointer type; `capacity` elements) to hold at least `needed`. */
#define RESERVE(array, capacity, needed)                                  \
  do {                                                                    \
    if ((needed) > (capacity)) {                                          \
      size_t grown_ = (capacity) ? (capacity) : 16;                       \
      while (grown_ < (needed)) grown_ *= 2;                              \
      (array) = xrealloc((array), grown_ * sizeof *(array));              \
      (capacity) = grown_;                                                \
    }                                                                     \
  } while (0)

/* The symbolic name of an errno value, as node puts in its messages (ENOENT), or NULL. */
static const char *errno_name(int error) {
  switch (error) {
#define NAME(e) \
  case e:       \
    return #e;
    NAME(EPERM) NAME(ENOENT) NAME(ESRCH) NAME(EINTR) NAME(EIO) NAME(ENXIO) NAME(E2BIG) NAME(ENOEXEC)
    NAME(EBADF) NAME(ECHILD) NAME(EAGAIN) NAME(ENOMEM) NAME(EACCES) NAME(EFAULT) NAME(EBUSY)
    NAME(EEXIST) NAME(ENODEV) NAME(ENOTDIR) NAME(EISDIR) NAME(EINVAL) NAME(ENFILE) NAME(EMFILE)
    NAME(ETXTBSY) NAME(EFBIG) NAME(ENOSPC) NAME(EROFS) NAME(EMLINK) NAME(EPIPE) NAME(ERANGE)
    NAME(ENAMETOOLONG) NAME(ELOOP) NAME(EOPNOTSUPP) NAME(EDQUOT)
#undef NAME
    default:
      return NULL;
  }
}

/* A malloc'd message, printf-style. */
static char *format_message(const char *format, ...) {
  va_list args;
  va_start(args, format);
  int length = vsnprintf(NULL, 0, format, args);
  va_end(args);
  if (length < 0) die(1, "cannot format a message");
  char *message = xrealloc(NULL, (size_t)length + 1);
  va_start(args, format);
  vsnprintf(message, (size_t)length + 1, format, args);
  va_end(args);
  return message;
}

/* "No such file or directory (ENOENT)": strerror with the name node would show. Static storage. */
static const char *describe_errno(int error) {
  static char text[256];
  const char *name = errno_name(error);
  if (name) snprintf(text, sizeof text, "%s (%s)", strerror(error), name);
  else snprintf(text, sizeof text, "%s (errno %d)", strerror(error), error);
  return text;
}

/* The name node gives a signal (SIGTERM, SIGKILL, ...); real-time ones have none there. */
static const char *signal_name(int signal_number) {
  static char other[32];
  switch (signal_number) {
#define NAME(s) \
  case s:       \
    return #s;
    NAME(SIGHUP) NAME(SIGINT) NAME(SIGQUIT) NAME(SIGILL) NAME(SIGTRAP) NAME(SIGABRT) NAME(SIGBUS)
    NAME(SIGFPE) NAME(SIGKILL) NAME(SIGUSR1) NAME(SIGSEGV) NAME(SIGUSR2) NAME(SIGPIPE) NAME(SIGALRM)
    NAME(SIGTERM) NAME(SIGCHLD) NAME(SIGCONT) NAME(SIGSTOP) NAME(SIGTSTP) NAME(SIGTTIN) NAME(SIGTTOU)
    NAME(SIGURG) NAME(SIGXCPU) NAME(SIGXFSZ) NAME(SIGVTALRM) NAME(SIGPROF) NAME(SIGSYS)
#ifdef SIGSTKFLT
    NAME(SIGSTKFLT)
#endif
#ifdef SIGWINCH
    NAME(SIGWINCH)
#endif
#ifdef SIGIO
    NAME(SIGIO)
#endif
#ifdef SIGPWR
    NAME(SIGPWR)
#endif
#undef NAME
    default:
      snprintf(other, sizeof other, "SIG%d", signal_number);
      return other;
  }
}

/* Opens a pipe whose both ends close on exec (plain POSIX: no pipe2; one thread, so no race). */
static int make_pipe(int fds[2]) {
  if (pipe(fds) < 0) return -1;
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Output: JSON lines on stdout, each written whole, at once                                       */

static struct {
  char *data;
  size_t length, capacity;
} out;

static void out_bytes(const char *bytes, size_t length) {
  RESERVE(out.data, out.capacity, out.length + length);
  memcpy(out.data + out.length, bytes, length);
  out.length += length;
}

static void out_text(const char *text) { out_bytes(text, strlen(text)); }

static void out_format(const char *format, ...) {
  char text[64];
  va_list args;
  va_start(args, format);
  int length = vsnprintf(text, sizeof text, format, args);
  va_end(args);
  if (length < 0 || (size_t)length >= sizeof text) die(1, "a number did not fit its buffer");
  out_bytes(text, (size_t)length);
}

/* A JSON string: quotes, backslashes and control characters escaped; other bytes (UTF-8) as they are. */
static void out_string(const char *text) {
  out_bytes("\"", 1);
  for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
    switch (*c) {
      case '"': out_bytes("\\\"", 2); break;
      case '\\': out_bytes("\\\\", 2); break;
      case '\n': out_bytes("\\n", 2); break;
      case '\r': out_bytes("\\r", 2); break;
      case '\t': out_bytes("\\t", 2); break;
      default:
        if (*c < 0x20 || *c == 0x7f) out_format("\\u%04x", *c);
        else out_bytes((const char *)c, 1);
    }
  }
  out_bytes("\"", 1);
}

/*
 * Writes what is buffered, all of it, now. The agent reading the other end is what this process
 * lives for: when the pipe is gone (EPIPE; SIGPIPE is ignored) or broken, the agent is, so leave.
 */
static void out_flush(void) {
  size_t done = 0;
  while (done < out.length) {
    ssize_t written = write(STDOUT_FILENO, out.data + done, out.length - done);
    if (written > 0) {
      done += (size_t)written;
    } else if (written < 0 && errno == EINTR) {
      continue;
    } else if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      /* A non-blocking stdout that is full: wait until the agent has read some. */
      struct pollfd writable = {STDOUT_FILENO, POLLOUT, 0};
      poll(&writable, 1, -1);
    } else {
      exit(0);
    }
  }
  out.length = 0;
}

static void send_error(unsigned long long id, const char *message) {
  out_format("{\"id\":%llu,\"error\":", id);
  out_string(message);
  out_text("}\n");
  out_flush();
}

/* ---------------------------------------------------------------------------------------------- */
/* Tasks: those spawned and not yet reported ended                                                 */

/*
 * A task is SPAWNING from its fork until its report pipe says how far the child got: EOF (the
 * exec closed it: the program runs; the pid goes out) or a child_failure (the error goes out).
 * Then RUNNING until it is reaped and its exit reported, or FAILED, to be reaped without a word.
 */
enum task_state { SPAWNING, RUNNING, FAILED };

struct task {
  pid_t pid;
  unsigned long long id;
  enum task_state state;
  /* SPAWNING: the read end of its report pipe. */
  int report_fd;
  /* SPAWNING: what an error message may need: file, cwd, then the join paths, each NUL-ended. */
  char *context;
  size_t joinc;
  /* Read end of the ready pipe (ready "1"), until it reaches EOF; -1 without one. */
  int ready_fd;
  int started_sent;
  /* Reaped: its wait status, held until it may go out (after the pid and the ready pipe's EOF). */
  int exited;
  int status;
};

/* Few at a time in practice (the running tasks of one agent); a linear scan finds one. */
static struct task *tasks;
static size_t task_count, task_capacity;
/* What poll() watches besides stdin and the SIGCHLD pipe: report pipes, and ready pipes once RUNNING. */
static size_t spawning, ready_open;

static void send_exit(const struct task *task) {
  out_format("{\"id\":%llu,\"exit\":", task->id);
  if (WIFEXITED(task->status)) out_format("%d,\"signal\":null}\n", WEXITSTATUS(task->status));
  else {
    out_text("null,\"signal\":");
    out_string(signal_name(WTERMSIG(task->status)));
    out_text("}\n");
  }
  out_flush();
}

/* Reports the task's exit once everything before it has gone out, and forgets the task. */
static void settle(size_t index) {
  struct task *task = &tasks[index];
  if (!task->exited || task->state == SPAWNING || task->ready_fd >= 0) return;
  if (task->state == RUNNING) send_exit(task);
  /* FAILED: the error went out; its exit (127, or a signal) is no task's outcome. */
  tasks[index] = tasks[--task_count];
}

static void on_report(size_t index);

static size_t task_of(pid_t pid) {
  for (size_t i = 0; i < task_count; i++) {
    if (tasks[i].pid == pid) return i;
  }
  return task_count;
}

/*
 * Reaps every child that ended; reports each (or holds it, see settle). A child is looked at before
 * it is reaped: one still SPAWNING (it exec'd and ended before its report pipe was read) gets its
 * pid reported first, while its /proc entry still exists, so its start time is its own.
 */
static void reap(void) {
  for (;;) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0) {
      if (errno == EINTR) continue;
      return; /* ECHILD: no children at all */
    }
    pid_t pid = info.si_pid;
    if (pid == 0) return; /* none left that ended */
    size_t index = task_of(pid);
    /* Its report pipe is readable now: the child exec'd (EOF), failed (a report) or died. */
    if (index < task_count && tasks[index].state == SPAWNING) on_report(index);
    /* Its group (a task is a session leader: the group has its pid) ends with it, while the
     * zombie still holds the pid, so the group id cannot have been reused. ESRCH when nothing is
     * left, or for a child that died before its setsid (no group has its pid then). */
    kill(-pid, SIGKILL);
    int status;
    pid_t reaped;
    do reaped = waitpid(pid, &status, 0);
    while (reaped < 0 && errno == EINTR);
    if (reaped != pid) continue;
    index = task_of(pid);
    if (index == task_count) continue;
    tasks[index].status = status;
    tasks[index].exited = 1;
    settle(index);
  }
}

/* The ready pipe has something: the ready byte (-> started), or EOF (-> the exit may go out). */
static void on_ready(size_t index) {
  struct task *task = &tasks[index];
  char bytes[64];
  ssize_t got = read(task->ready_fd, bytes, sizeof bytes);
  if (got < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (got > 0) {
    if (!task->started_sent) {
      task->started_sent = 1;
      out_format("{\"id\":%llu,\"started\":true}\n", task->id);
      out_flush();
    }
    return;
  }
  /* EOF (every copy of the write end is closed) or an error: nothing more will come. */
  close(task->ready_fd);
  task->ready_fd = -1;
  ready_open--;
  settle(index);
}

/* ---------------------------------------------------------------------------------------------- */
/* Spawning                                                                                        */

/* The base environment ("B"): KEY=VALUE strings owned here. */
static char **base_env;
static size_t base_count;

/* /dev/null, the tasks' stdin; opened once. */
static int dev_null = -1;

struct spawn_request {
  unsigned long long id;
  const char *cwd, *file;
  char **argv; /* argc entries, then NULL */
  size_t argc;
  char **env; /* KEY=VALUE entries added to / overriding the base environment */
  size_t envc;
  char **join; /* cgroup.procs files to write "0" to */
  size_t joinc;
  int ready;
};

/* What the child tells the parent when it cannot get to exec; the pipe carries nothing on success. */
enum stage { STAGE_SETSID = 1, STAGE_JOIN, STAGE_STDIO, STAGE_CHDIR, STAGE_EXEC };
struct child_failure {
  int stage;
  int error;
  int index; /* which join path, for STAGE_JOIN */
};

static size_t key_length(const char *entry) { return strcspn(entry, "="); }

/* The task's environment: base entries not overridden, then the request's. NULL-terminated. */
static char **task_environment(const struct spawn_request *request) {
  static char **env;
  static size_t capacity;
  size_t count = 0;
  RESERVE(env, capacity, base_count + request->envc + 1);
  for (size_t i = 0; i < base_count; i++) {
    size_t length = key_length(base_env[i]);
    int overridden = 0;
    for (size_t j = 0; j < request->envc && !overridden; j++)
      overridden = key_length(request->env[j]) == length && memcmp(request->env[j], base_env[i], length) == 0;
    if (!overridden) env[count++] = base_env[i];
  }
  for (size_t j = 0; j < request->envc; j++) env[count++] = request->env[j];
  env[count] = NULL;
  return env;
}

/* In the child: say why it could not exec, and go. Only async-signal-safe calls from here on. */
static void child_fail(int report_fd, int stage, int error, int index) {
  struct child_failure failure = {stage, error, index};
  if (write(report_fd, &failure, sizeof failure) < 0) {
    /* The parent then sees EOF and this child's exit status 127: nothing better to do. */
  }
  _exit(127);
}

/* Makes `from` the descriptor `to`, kept open across exec. */
static int move_fd(int from, int to) {
  if (from == to) return fcntl(to, F_SETFD, 0);
  return dup2(from, to) < 0 ? -1 : 0;
}

/*
 * execve with `file` searched in the PATH of the task's environment (not this process's), the way
 * libuv does for node: a name with a slash is used as it is; EACCES from a candidate is remembered
 * and the search goes on; ENOENT and ENOTDIR go on; any other error ends it. Returns only on failure.
 */
static void exec_search(const char *file, char *const argv[], char *const env[]) {
  if (strchr(file, '/')) {
    execve(file, argv, env);
    return;
  }
  const char *path = DEFAULT_PATH;
  for (char *const *entry = env; *entry; entry++) {
    if (strncmp(*entry, "PATH=", 5) == 0) {
      path = *entry + 5;
      break;
    }
  }
  size_t file_length = strlen(file);
  int saw_eacces = 0;
  for (const char *dir = path;;) {
    const char *end = strchr(dir, ':');
    size_t dir_length = end ? (size_t)(end - dir) : strlen(dir);
    char candidate[EXEC_PATH_MAX];
    if (dir_length + 1 + file_length + 1 <= sizeof candidate) {
      /* An empty entry is the current directory, as in execvp. */
      size_t at = 0;
      if (dir_length > 0) {
        memcpy(candidate, dir, dir_length);
        at = dir_length;
        candidate[at++] = '/';
      }
      memcpy(candidate + at, file, file_length + 1);
      execve(candidate, argv, env);
      if (errno == EACCES) saw_eacces = 1;
      else if (errno != ENOENT && errno != ENOTDIR) return;
    }
    if (!end) break;
    dir = end + 1;
  }
  errno = saw_eacces ? EACCES : ENOENT;
}

/* The forked child: becomes the task. Never returns. */
static void run_child(const struct spawn_request *request, char **env, int stdout_fd, int stderr_fd, int ready_fd, int report_fd) {
  /* A session and process group of its own first: the agent signals the group; the task outlives
   * us; and a Ctrl-C meant for the agent's group can no longer reach it once its dispositions are
   * back to the defaults below. */
  if (setsid() < 0) child_fail(report_fd, STAGE_SETSID, errno, 0);

  /* Dispositions this process changed go back to the default (ignored ones would survive exec),
   * and no signal stays blocked: the task starts as if spawned by node. */
  struct sigaction default_action;
  memset(&default_action, 0, sizeof default_action);
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  const int changed[] = {SIGCHLD, SIGPIPE, SIGINT, SIGHUP};
  for (size_t i = 0; i < sizeof changed / sizeof *changed; i++) sigaction(changed[i], &default_action, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);

  /* Join the task's cgroups before anything of the task runs. "0" means the writing process, in
   * cgroup v1 and v2 alike. */
  for (size_t i = 0; i < request->joinc; i++) {
    int fd = open(request->join[i], O_WRONLY | O_CLOEXEC);
    if (fd < 0) child_fail(report_fd, STAGE_JOIN, errno, (int)i);
    ssize_t written;
    do written = write(fd, "0", 1);
    while (written < 0 && errno == EINTR);
    if (written != 1) child_fail(report_fd, STAGE_JOIN, written < 0 ? errno : EIO, (int)i);
    close(fd);
  }

  /* Every descriptor of this process is close-on-exec, so the task gets exactly 0-2 (and 3). The
   * ones moved here are all above 4 (0-2 and the self-pipe were open first), so none is clobbered. */
  if (move_fd(dev_null, STDIN_FILENO) < 0 || move_fd(stdout_fd, STDOUT_FILENO) < 0 || move_fd(stderr_fd, STDERR_FILENO) < 0 ||
      (ready_fd >= 0 && move_fd(ready_fd, 3) < 0))
    child_fail(report_fd, STAGE_STDIO, errno, 0);

  if (chdir(request->cwd) < 0) child_fail(report_fd, STAGE_CHDIR, errno, 0);
  exec_search(request->file, request->argv, env);
  child_fail(report_fd, STAGE_EXEC, errno, 0);
}

/*
 * Opens cwd/name for appending, creating it (0666, less the umask). Only a regular file: a symlink
 * or a FIFO left in a reused sandbox must neither redirect the output elsewhere nor block this loop
 * (O_NONBLOCK makes a FIFO without a reader fail with ENXIO instead of waiting for one).
 */
static int open_log(const char *cwd, const char *name) {
  char *path = format_message("%s/%s", cwd, name);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0666);
  int error = errno;
  free(path);
  if (fd >= 0) {
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
      error = fstat(fd, &st) < 0 ? errno : EINVAL;
      close(fd);
      fd = -1;
    } else fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  }
  errno = error;
  return fd;
}

/* Field 22 of /proc/<pid>/stat (start time in clock ticks since boot) into `into`; 0 when unknown. */
static int start_time(pid_t pid, char *into, size_t size) {
  char path[64], stat[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t got = read(fd, stat, sizeof stat - 1);
  close(fd);
  if (got <= 0) return 0;
  stat[got] = '\0';
  /* The command name (field 2) may hold spaces and parentheses; what follows the last ')' is safe:
   * ") " then field 3 onwards, space-separated. */
  char *field = strrchr(stat, ')');
  if (!field) return 0;
  field += 2;
  for (int n = 3; n < 22; n++) {
    field = strchr(field, ' ');
    if (!field) return 0;
    field++;
  }
  size_t length = strcspn(field, " ");
  if (length == 0 || length >= size) return 0;
  memcpy(into, field, length);
  into[length] = '\0';
  return 1;
}

/* The report pipe of a SPAWNING task has something: a failure, or EOF (it exec'd). */
static void on_report(size_t index) {
  struct task *task = &tasks[index];
  struct child_failure failure;
  ssize_t got = read(task->report_fd, &failure, sizeof failure);
  if (got < 0 && (errno == EINTR || errno == EAGAIN)) return;
  close(task->report_fd);
  task->report_fd = -1;
  spawning--;
  const char *file = task->context;
  const char *cwd = file + strlen(file) + 1;
  if (got <= 0) {
    /* EOF: the exec closed the pipe, so the program runs (in its cgroups, if it had any). The pid
     * goes out at once. (A child killed before it could exec also ends here: its exit says so.) */
    task->state = RUNNING;
    char start[32];
    out_format("{\"id\":%llu,\"pid\":%ld", task->id, (long)task->pid);
    if (start_time(task->pid, start, sizeof start)) {
      out_text(",\"startTime\":");
      out_string(start);
    }
    out_text("}\n");
    if (task->joinc > 0) out_format("{\"id\":%llu,\"started\":true}\n", task->id);
    out_flush();
    if (task->ready_fd >= 0) ready_open++;
  } else {
    /* It could not exec and exits 127: the error goes out; reap() forgets it. */
    task->state = FAILED;
    char *message;
    if ((size_t)got < sizeof failure) message = format_message("cannot start %s: its process failed before exec", file);
    else if (failure.stage == STAGE_JOIN) {
      const char *join = cwd + strlen(cwd) + 1;
      for (int i = 0; i < failure.index && (size_t)i < task->joinc; i++) join += strlen(join) + 1;
      message = format_message("cannot join cgroup %s: %s", join, describe_errno(failure.error));
    } else if (failure.stage == STAGE_CHDIR)
      message = format_message("cannot start %s: cannot change to its directory %s: %s", file, cwd, describe_errno(failure.error));
    else if (failure.stage == STAGE_EXEC) message = format_message("cannot start %s: %s", file, describe_errno(failure.error));
    else message = format_message("cannot start %s: %s failed: %s", file, failure.stage == STAGE_SETSID ? "setsid" : "dup2", describe_errno(failure.error));
    send_error(task->id, message);
    free(message);
    if (task->ready_fd >= 0) close(task->ready_fd);
    task->ready_fd = -1;
  }
  free(task->context);
  task->context = NULL;
  settle(index);
}

/*
 * Opens the task's stdout/stderr and forks it; the child joins its cgroups and execs while this
 * process goes on with the next request (a cgroup join can take milliseconds, and waiting for each
 * would make this loop the agent's bottleneck). on_report() finishes the spawn.
 */
static void spawn_task(const struct spawn_request *request) {
  int stdout_fd = open_log(request->cwd, "stdout");
  int stderr_fd = stdout_fd < 0 ? -1 : open_log(request->cwd, "stderr");
  if (stdout_fd < 0 || stderr_fd < 0) {
    char *message = format_message("cannot open the task's stdout/stderr in %s: %s", request->cwd, describe_errno(errno));
    if (stdout_fd >= 0) close(stdout_fd);
    send_error(request->id, message);
    free(message);
    return;
  }
  int report[2] = {-1, -1}, ready[2] = {-1, -1};
  if (make_pipe(report) < 0 || (request->ready && make_pipe(ready) < 0)) {
    char *message = format_message("cannot start the task: pipe: %s", describe_errno(errno));
    send_error(request->id, message);
    free(message);
    for (int i = 0; i < 2; i++) {
      if (report[i] >= 0) close(report[i]);
    }
    close(stdout_fd);
    close(stderr_fd);
    return;
  }
  char **env = task_environment(request);

  pid_t pid = fork();
  if (pid == 0) run_child(request, env, stdout_fd, stderr_fd, ready[1], report[1]);
  int fork_error = errno;
  /* The child's ends are closed here before anything else is forked, so no other child holds them:
   * the report pipe reaches EOF exactly when this child execs or dies. */
  close(report[1]);
  close(stdout_fd);
  close(stderr_fd);
  if (ready[1] >= 0) close(ready[1]);
  if (pid < 0) {
    close(report[0]);
    if (ready[0] >= 0) close(ready[0]);
    char *message = format_message("cannot start the task: fork: %s", describe_errno(fork_error));
    send_error(request->id, message);
    free(message);
    return;
  }

  /* What an error message may need later, when the request's buffer is gone. */
  size_t size = strlen(request->file) + 1 + strlen(request->cwd) + 1;
  for (size_t i = 0; i < request->joinc; i++) size += strlen(request->join[i]) + 1;
  char *context = xrealloc(NULL, size), *at = context;
  at = (char *)memcpy(at, request->file, strlen(request->file) + 1) + strlen(request->file) + 1;
  at = (char *)memcpy(at, request->cwd, strlen(request->cwd) + 1) + strlen(request->cwd) + 1;
  for (size_t i = 0; i < request->joinc; i++) at = (char *)memcpy(at, request->join[i], strlen(request->join[i]) + 1) + strlen(request->join[i]) + 1;

  RESERVE(tasks, task_capacity, task_count + 1);
  struct task *task = &tasks[task_count++];
  memset(task, 0, sizeof *task);
  task->pid = pid;
  task->id = request->id;
  task->state = SPAWNING;
  task->report_fd = report[0];
  task->context = context;
  task->joinc = request->joinc;
  task->ready_fd = ready[0];
  spawning++;
}

/* ---------------------------------------------------------------------------------------------- */
/* Input: records of NUL-terminated fields, parsed as they complete                                */

static struct {
  char *data;
  size_t length, capacity;
} in;

/* Where a record's parse has got to. */
struct cursor {
  char *at, *end;
};

/* The next field, or NULL when the input ends before its NUL (the record is not complete yet). */
static char *next_field(struct cursor *cursor) {
  char *nul = memchr(cursor->at, '\0', (size_t)(cursor->end - cursor->at));
  if (!nul) return NULL;
  char *field = cursor->at;
  cursor->at = nul + 1;
  return field;
}

static void malformed(const char *what, const char *field) {
  die(2, "malformed input: %s (got \"%.40s\")", what, field ? field : "");
}

/* A decimal count or id: digits only, at most `digits` of them, at most `max`. */
static unsigned long long decimal(const char *field, int digits, unsigned long long max, const char *what) {
  size_t length = strlen(field);
  if (length == 0 || length > (size_t)digits || strspn(field, "0123456789") != length) malformed(what, field);
  unsigned long long value = strtoull(field, NULL, 10);
  if (value > max) malformed(what, field);
  return value;
}

/* Reads `count` (a count field, then that many fields) into *list (NULL-terminated). 0: incomplete. */
static int read_list(struct cursor *cursor, char ***list, size_t *capacity, size_t *count, const char *what) {
  char *field = next_field(cursor);
  if (!field) return 0;
  *count = (size_t)decimal(field, 7, MAX_COUNT, what);
  RESERVE(*list, *capacity, *count + 1);
  for (size_t i = 0; i < *count; i++) {
    if (!((*list)[i] = next_field(cursor))) return 0;
  }
  (*list)[*count] = NULL;
  return 1;
}

static void set_base(char **entries, size_t count) {
  for (size_t i = 0; i < base_count; i++) free(base_env[i]);
  base_env = xrealloc(base_env, (count + 1) * sizeof *base_env);
  for (size_t i = 0; i < count; i++) {
    size_t length = strlen(entries[i]) + 1;
    base_env[i] = memcpy(xrealloc(NULL, length), entries[i], length);
  }
  base_env[count] = NULL;
  base_count = count;
}

/*
 * Parses (and carries out) the record at `data`. Returns the bytes it took, or 0 when it is not
 * complete yet; exits on a malformed one. Fields are used in place (each ends with its NUL).
 */
static size_t take_record(char *data, size_t length) {
  static char **argv, **env, **join;
  static size_t argv_capacity, env_capacity, join_capacity;
  struct cursor cursor = {data, data + length};
  char *type = next_field(&cursor);
  if (!type) return 0;
  if (strcmp(type, "B") == 0) {
    size_t count;
    if (!read_list(&cursor, &env, &env_capacity, &count, "base environment count")) return 0;
    set_base(env, count);
    return (size_t)(cursor.at - data);
  }
  if (strcmp(type, "S") != 0) malformed("a record starts with B or S", type);
  struct spawn_request request;
  char *field;
  if (!(field = next_field(&cursor))) return 0;
  request.id = decimal(field, MAX_ID_DIGITS, 999999999999999ULL, "spawn id");
  if (!(request.cwd = next_field(&cursor)) || !(request.file = next_field(&cursor))) return 0;
  if (!read_list(&cursor, &argv, &argv_capacity, &request.argc, "argument count")) return 0;
  if (!read_list(&cursor, &env, &env_capacity, &request.envc, "environment count")) return 0;
  if (!read_list(&cursor, &join, &join_capacity, &request.joinc, "cgroup count")) return 0;
  if (!(field = next_field(&cursor))) return 0;
  if (strcmp(field, "0") != 0 && strcmp(field, "1") != 0) malformed("ready is 0 or 1", field);
  request.ready = field[0] == '1';
  /* Well framed but unusable: that task fails, not the launcher (and every task it watches). */
  const char *unusable = request.argc == 0 ? "no argv[0]" : request.file[0] == '\0' ? "the program is empty" : request.cwd[0] == '\0' ? "the directory is empty" : NULL;
  if (unusable) {
    char *message = format_message("cannot start the task: %s", unusable);
    send_error(request.id, message);
    free(message);
    return (size_t)(cursor.at - data);
  }
  request.argv = argv;
  request.env = env;
  request.join = join;
  spawn_task(&request);
  return (size_t)(cursor.at - data);
}

/* stdin is still open: requests may come. */
static int input_open = 1;

/*
 * Reads what stdin has. At its end (the agent is gone or stopping) no more requests come; the loop
 * exits once the spawns in flight have reported their pids, leaving the tasks running.
 */
static void on_input(void) {
  RESERVE(in.data, in.capacity, in.length + 65536);
  ssize_t got = read(STDIN_FILENO, in.data + in.length, in.capacity - in.length);
  if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (got <= 0) {
    input_open = 0;
    return;
  }
  in.length += (size_t)got;
  if (in.length > MAX_INPUT) die(2, "malformed input: a record of more than %lu bytes", (unsigned long)MAX_INPUT);
  /* Each complete record is carried out in turn; what is left (a partial one) moves to the front. */
  size_t start = 0, taken;
  while (start < in.length && (taken = take_record(in.data + start, in.length - start)) > 0) start += taken;
  if (start > 0) {
    memmove(in.data, in.data + start, in.length - start);
    in.length -= start;
  }
}

/* ---------------------------------------------------------------------------------------------- */
/* Main loop                                                                                       */

static int sigchld_pipe[2] = {-1, -1};

static void on_sigchld(int signal_number) {
  (void)signal_number;
  int saved = errno;
  /* Non-blocking: a full pipe already holds a wake-up. */
  if (write(sigchld_pipe[1], "x", 1) < 0) {
  }
  errno = saved;
}

int main(void) {
  /* 0-2 must be open, so that nothing opened here lands on them (the agent gives all three). */
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd) return 1;
  }
  if (make_pipe(sigchld_pipe) < 0) die(1, "pipe: %s", strerror(errno));
  fcntl(sigchld_pipe[0], F_SETFL, O_NONBLOCK);
  fcntl(sigchld_pipe[1], F_SETFL, O_NONBLOCK);
  dev_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (dev_null < 0) die(1, "cannot open /dev/null: %s", strerror(errno));

  /* SIGPIPE: a closed stdout is seen as EPIPE. SIGINT, SIGHUP: meant for the agent's terminal or
   * group (Ctrl-C); the agent acts on them, and this process follows the agent by its stdin. */
  struct sigaction action;
  memset(&action, 0, sizeof action);
  sigemptyset(&action.sa_mask);
  action.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &action, NULL);
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGHUP, &action, NULL);
  action.sa_handler = on_sigchld;
  action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &action, NULL);

  out_text("{\"up\":true}\n");
  out_flush();

  /* Per poll() entry after the first two: which pipe of a task it is. */
  enum { REPORT, READY };
  struct pollfd *fds = NULL;
  int *kinds = NULL;
  size_t fds_capacity = 0, kinds_capacity = 0;
  for (;;) {
    if (!input_open && spawning == 0) exit(0);
    RESERVE(fds, fds_capacity, 2 + spawning + ready_open);
    RESERVE(kinds, kinds_capacity, 2 + spawning + ready_open);
    size_t nfds = 0;
    /* At its end stdin stays in the set with no events asked for (negative fd: ignored by poll). */
    fds[nfds++] = (struct pollfd){input_open ? STDIN_FILENO : -1, POLLIN, 0};
    fds[nfds++] = (struct pollfd){sigchld_pipe[0], POLLIN, 0};
    if (spawning + ready_open > 0) {
      for (size_t i = 0; i < task_count; i++) {
        if (tasks[i].report_fd >= 0) {
          kinds[nfds] = REPORT;
          fds[nfds++] = (struct pollfd){tasks[i].report_fd, POLLIN, 0};
        } else if (tasks[i].state == RUNNING && tasks[i].ready_fd >= 0) {
          kinds[nfds] = READY;
          fds[nfds++] = (struct pollfd){tasks[i].ready_fd, POLLIN, 0};
        }
      }
    }
    if (poll(fds, (nfds_t)nfds, -1) < 0) {
      if (errno == EINTR) continue;
      die(1, "poll: %s", strerror(errno));
    }
    /* Report pipes first (a pid before anything else about its task), then ready pipes (a task's
     * byte, then its EOF), then exits, then new requests. Handlers may remove tasks: look each up. */
    for (int kind = REPORT; kind <= READY; kind++) {
      for (size_t p = 2; p < nfds; p++) {
        if (!fds[p].revents || kinds[p] != kind) continue;
        for (size_t i = 0; i < task_count; i++) {
          if (kind == REPORT && tasks[i].report_fd == fds[p].fd) {
            on_report(i);
            break;
          }
          if (kind == READY && tasks[i].ready_fd == fds[p].fd) {
            on_ready(i);
            break;
          }
        }
      }
    }
    if (fds[1].revents) {
      char drain[256];
      while (read(sigchld_pipe[0], drain, sizeof drain) > 0) {
      }
      reap();
    }
    if (fds[0].revents) on_input();
  }
}
