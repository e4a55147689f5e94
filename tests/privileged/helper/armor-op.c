// SPDX-License-Identifier: Apache-2.0
// armor-op: performs exactly one operation and reports its errno, for the privileged tests.
// Built statically by build.rs so that it runs unchanged on the host and in the test guest, and
// so that an exec of it loads no shared library (a policy under test sees one exec, one file).
//
//   armor-op [--cgroup DIR] exec PATH [ARG...]
//   armor-op [--cgroup DIR] open PATH FLAGS            FLAGS: rdonly,wronly,rdwr,creat,trunc,...
//   armor-op [--cgroup DIR] socket DOMAIN TYPE PROTO   names (inet, stream, ...) or numbers
//   armor-op [--cgroup DIR] cap NAME [PATH]            net_bind_service net_raw sys_chroot
//                                                      sys_admin setuid kill chown PATH
//   armor-op [--cgroup DIR] chroot-open ROOT PATH FLAGS
//   armor-op [--cgroup DIR] unlink|truncate|chmod|chown PATH
//   armor-op [--cgroup DIR] rename|link PATH NEWPATH
//   armor-op ok                                        reports success (an exec target)
//   armor-op fexec PATH [ARG...]                       execveat(open(PATH, O_PATH), "", AT_EMPTY_PATH)
//   armor-op procfd-open PATH FLAGS                    open(PATH, O_PATH), then /proc/self/fd/N
//   armor-op open-n PATH FLAGS N                       N opens (a flood); reports the last
//   armor-op open-count PATH N                         N read-only opens; prints how many
//                                                      succeeded ("armor-op: opened K of N")
//   armor-op tree-open DIR FILE                        in a user namespace of its own, a
//                                                      detached copy of DIR (open_tree
//                                                      OPEN_TREE_CLONE), then FILE inside it
//   armor-op by-handle PATH                            name_to_handle_at, drop the dentry
//                                                      cache, open_by_handle_at (disconnected)
//   armor-op procroot-open PATH                        PATH of a child in a mount namespace of
//                                                      its own, through /proc/CHILD/root
//   armor-op scm-read SOCKET                           receive an fd over the unix socket
//                                                      SOCKET (SCM_RIGHTS) and read from it
//   armor-op map-exec PATH                             mmap PATH with PROT_EXEC (as ld.so does)
//   armor-op mprotect-exec PATH                        mmap PATH readable, mprotect PROT_EXEC
//   armor-op pipe                                      write to and read from a pipe
//   armor-op memfd-exec PATH [ARG...]                  copy PATH into a memfd and execute that
//                                                      (fileless execution)
//   armor-op bind-open SRC DST FLAGS                   bind-mount SRC on DST (in its own
//                                                      mount namespace), then open DST
//   armor-op unshare-open PATH FLAGS                   a new mount namespace (unshare -m),
//                                                      then open PATH
//   armor-op rename-open DIR NEWDIR PATH FLAGS         rename DIR to NEWDIR, open PATH (under
//                                                      NEWDIR), rename it back
//   armor-op copy-exec SRC DST [ARG...]                copy SRC to DST (mode 0755), exec DST
//   armor-op anon-exec mmap|mprotect|memfd             anonymous memory made executable: mmap
//                                                      PROT_EXEC, mmap writable then mprotect
//                                                      PROT_EXEC, or a memfd mapped PROT_EXEC
//   armor-op tty-exec PATH [ARG...]                    a new session whose controlling terminal
//                                                      is a fresh pty, then exec PATH (in a child;
//                                                      the report is the child's)
//   armor-op unlinked-exec PATH [ARG...]               copy PATH to PATH.unlinked, open it,
//                                                      unlink it, execute the open file
//   armor-op exec-args PATH [ARG...]                   exec PATH (a copy of armor-op) with
//                                                      these arguments; it reports ok whatever
//                                                      they are (ARMOR_OP_EXECUTED)
//   armor-op race-exec PATH N [thread]                 N execs of PATH (an armor-op) with an
//                                                      argument a second thread rewrites
//                                                      between `ok` and `xx` meanwhile; prints
//                                                      "armor-op: race listed=.. unlisted=..
//                                                      denied=.. killed=.. other=.."
//   armor-op sys NAME                                  one syscall the event source's classic
//                                                      programs do not trace: ptrace
//                                                      (PTRACE_TRACEME), setuid (own uid),
//                                                      unshare (CLONE_NEWUTS), mount (a tmpfs on
//                                                      /tmp, in a private mount namespace of
//                                                      its own), init_module (no image),
//                                                      getppid (never named by a test)
//
// Live-corpus options (before the operation, in this order of effect):
//   --cgroup-procs FILE  open FILE (a cgroup.procs) now, join that cgroup right before the
//                        operation, after every exec
//   --root DIR           private mount namespace with DIR pivoted to its root
//   --uid N              setgid/setuid N (after --root)
//   --exe PATH           exec PATH (inside the root) to perform the operation, so the acting
//                        executable is PATH
//   --aa-exec LABEL      AppArmor: the next exec (the --exe one, or the operation's) enters
//                        LABEL (a profile or a `A//&B` stack), written to attr/exec first
//   --via PATH           with --exe: exec PATH (inside the root; an armor-op) first, which
//                        then execs EXE: with --aa-exec, PATH starts in LABEL like a
//                        workload's init, and EXE gets the label LABEL's exec rules give it
//
// Report: stdout's last line is "armor-op: ok" (exit 0) or "armor-op: errno N NAME" (exit N).
// A successful exec reports nothing: the new program's output and exit status are the result.
// --cgroup moves the process into the cgroup v2 directory DIR before the operation.
// Usage and setup errors exit 254 with a message on stderr.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <pthread.h>
#include <sys/ptrace.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <grp.h>
#include <unistd.h>

#define SETUP_FAILURE 254

static int setup_failure(const char *what) {
    fprintf(stderr, "armor-op: %s: %s\n", what, strerror(errno));
    return SETUP_FAILURE;
}

static int usage(void) {
    fprintf(stderr, "armor-op: usage: armor-op [--cgroup DIR] exec|open|socket|cap|chroot-open ARGS\n");
    return SETUP_FAILURE;
}

// Reports the result of the operation: rc < 0 means it failed with errno.
static int report(long rc) {
    if (rc >= 0) {
        printf("armor-op: ok\n");
        return 0;
    }
    int e = errno;
    const char *name = strerrorname_np(e);
    printf("armor-op: errno %d %s\n", e, name ? name : "?");
    return e;
}

static int parse_open_flags(const char *spec, int *flags) {
    static const struct { const char *name; int flag; } table[] = {
        {"rdonly", O_RDONLY}, {"wronly", O_WRONLY}, {"rdwr", O_RDWR}, {"creat", O_CREAT},
        {"excl", O_EXCL}, {"trunc", O_TRUNC}, {"append", O_APPEND}, {"directory", O_DIRECTORY},
        {"nofollow", O_NOFOLLOW}, {"path", O_PATH}, {"noatime", O_NOATIME},
    };
    char buf[256];
    if (strlen(spec) >= sizeof buf) return -1;
    strcpy(buf, spec);
    *flags = O_CLOEXEC;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t i;
        for (i = 0; i < sizeof table / sizeof table[0]; i++) {
            if (strcmp(tok, table[i].name) == 0) {
                *flags |= table[i].flag;
                break;
            }
        }
        if (i == sizeof table / sizeof table[0]) return -1;
    }
    return 0;
}

static int parse_number(const char *s, const char *const names[][2], size_t n, int *out) {
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, names[i][0]) == 0) s = names[i][1];
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || *end || end == s || v < 0 || v > 0xffff) return -1;
    *out = (int)v;
    return 0;
}

static int op_open(const char *path, const char *spec) {
    int flags;
    if (parse_open_flags(spec, &flags)) return usage();
    return report(open(path, flags, 0644));
}

static int op_socket(const char *d, const char *t, const char *p) {
    static const char *const domains[][2] = {
        {"unix", "1"}, {"inet", "2"}, {"inet6", "10"}, {"netlink", "16"}, {"packet", "17"}};
    static const char *const types[][2] = {
        {"stream", "1"}, {"dgram", "2"}, {"raw", "3"}, {"seqpacket", "5"}};
    static const char *const protos[][2] = {
        {"default", "0"}, {"icmp", "1"}, {"tcp", "6"}, {"udp", "17"}, {"icmpv6", "58"}};
    int domain, type, proto;
    if (parse_number(d, domains, 5, &domain) || parse_number(t, types, 4, &type) ||
        parse_number(p, protos, 5, &proto))
        return usage();
    return report(socket(domain, type, proto));
}

static int op_cap(const char *name, const char *path) {
    if (strcmp(name, "net_bind_service") == 0) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) return setup_failure("socket");
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(1023),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        return report(bind(fd, (struct sockaddr *)&sa, sizeof sa));
    }
    if (strcmp(name, "net_raw") == 0) return report(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    if (strcmp(name, "sys_chroot") == 0) return report(chroot("/"));
    if (strcmp(name, "sys_admin") == 0) return report(unshare(CLONE_NEWUTS));
    if (strcmp(name, "setuid") == 0) {
        // A uid the caller does not hold: needs CAP_SETUID unless the caller is already it.
        uid_t target = getuid() == 65533 ? 65532 : 65533;
        return report(setuid(target));
    }
    if (strcmp(name, "kill") == 0) return report(kill(1, 0));
    if (strcmp(name, "net_admin") == 0) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (fd < 0) return setup_failure("socket");
        int v = 1 << 20;
        return report(setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v));
    }
    if (strcmp(name, "chown") == 0 && path) return report(chown(path, 65534, 65534));
    return usage();
}

static int enter_root(const char *dir) {
    if (unshare(CLONE_NEWNS) != 0) return setup_failure("unshare(CLONE_NEWNS)");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return setup_failure("mount private");
    if (mount(dir, dir, NULL, MS_BIND | MS_REC, NULL) != 0) return setup_failure("bind root");
    if (chdir(dir) != 0) return setup_failure("chdir root");
    if (syscall(SYS_pivot_root, ".", ".") != 0) return setup_failure("pivot_root");
    if (umount2(".", MNT_DETACH) != 0) return setup_failure("umount old root");
    if (chdir("/") != 0) return setup_failure("chdir /");
    struct stat st;
    if (stat("/proc", &st) == 0 && S_ISDIR(st.st_mode) && mount("proc", "/proc", "proc", 0, NULL) != 0)
        return setup_failure("mount /proc");
    return 0;
}

static int op_chroot_open(const char *root, const char *path, const char *spec) {
    int flags;
    if (parse_open_flags(spec, &flags)) return usage();
    if (chroot(root) != 0) return report(-1);
    if (chdir("/") != 0) return setup_failure("chdir /");
    return report(open(path, flags, 0644));
}

static int join_cgroup(const char *dir) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/cgroup.procs", dir) >= (int)sizeof path) return -1;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    ssize_t w = write(fd, pid, (size_t)n);
    int e = errno;
    close(fd);
    errno = e;
    return w == n ? 0 : -1;
}

// The AppArmor onexec label: `exec LABEL` to the LSM-specific attr file, else the shared one.
static int set_aa_exec(const char *label) {
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "exec %s", label);
    if (n < 0 || (size_t)n >= sizeof buf) return -1;
    int fd = open("/proc/self/attr/apparmor/exec", O_WRONLY);
    if (fd < 0) fd = open("/proc/self/attr/exec", O_WRONLY);
    if (fd < 0) return -1;
    ssize_t w = write(fd, buf, (size_t)n);
    close(fd);
    return w == n ? 0 : -1;
}

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

// A detached copy of DIR made in an unprivileged user namespace of our own, then FILE in it.
static int op_tree_open(const char *dir, const char *file) {
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return setup_failure("unshare(CLONE_NEWUSER|CLONE_NEWNS)");
    int t = (int)syscall(SYS_open_tree, AT_FDCWD, dir, OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE);
    if (t < 0) return setup_failure("open_tree");
    return report(openat(t, file, O_RDONLY | O_CLOEXEC));
}

// A disconnected dentry: the file's handle, the dentry cache dropped, the handle opened.
static int op_by_handle(const char *path) {
    struct file_handle *h = calloc(1, sizeof *h + MAX_HANDLE_SZ);
    if (!h) return setup_failure("calloc");
    h->handle_bytes = MAX_HANDLE_SZ;
    int mnt_id;
    if (name_to_handle_at(AT_FDCWD, path, h, &mnt_id, 0) != 0) return report(-1);
    int mfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (mfd < 0) return setup_failure("open /");
    sync();
    int dc = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
    if (dc < 0 || write(dc, "2\n", 2) != 2) return setup_failure("drop_caches");
    close(dc);
    return report(open_by_handle_at(mfd, h, O_RDONLY | O_CLOEXEC));
}

// PATH as a child in a mount namespace of its own sees it, through /proc/CHILD/root.
static int op_procroot_open(const char *path) {
    int p[2];
    if (pipe(p) != 0) return setup_failure("pipe");
    pid_t child = fork();
    if (child < 0) return setup_failure("fork");
    if (child == 0) {
        char c = unshare(CLONE_NEWNS) == 0 ? 'y' : 'n';
        if (write(p[1], &c, 1) != 1) _exit(1);
        pause();
        _exit(0);
    }
    char c = 0;
    if (read(p[0], &c, 1) != 1 || c != 'y') return setup_failure("child unshare(CLONE_NEWNS)");
    char via[4200];
    snprintf(via, sizeof via, "/proc/%d/root%s", (int)child, path);
    int rc = report(open(via, O_RDONLY | O_CLOEXEC));
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return rc;
}

// An fd received over the unix socket SOCKET (SCM_RIGHTS), read from.
static int op_scm_read(const char *sock) {
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return setup_failure("socket");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) return setup_failure("connect");
    char byte;
    char control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof control};
    if (recvmsg(s, &msg, 0) != 1) return setup_failure("recvmsg");
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (!cm || cm->cmsg_type != SCM_RIGHTS) return setup_failure("no SCM_RIGHTS");
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    char buf[8];
    return report(read(fd, buf, sizeof buf));
}

// PATH mapped executable: directly (mprotect = 0) or readable first, then made executable.
static int op_map_exec(const char *path, int mprotect_after) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return setup_failure("open");
    if (!mprotect_after) {
        void *m = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
        return report(m == MAP_FAILED ? -1 : 0);
    }
    void *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) return setup_failure("mmap PROT_READ");
    return report(mprotect(m, 4096, PROT_READ | PROT_EXEC));
}

// PATH's content executed from a memfd (no file on any file system).
static int op_memfd_exec(char **argv) {
    int src = open(argv[0], O_RDONLY | O_CLOEXEC);
    if (src < 0) return setup_failure("open");
    int m = (int)syscall(SYS_memfd_create, "armor-memfd", 0);
    if (m < 0) return setup_failure("memfd_create");
    char buf[65536];
    ssize_t n;
    while ((n = read(src, buf, sizeof buf)) > 0) {
        if (write(m, buf, (size_t)n) != n) return setup_failure("write memfd");
    }
    if (n < 0) return setup_failure("read");
    fflush(stdout);
    extern char **environ;
    syscall(SYS_execveat, m, "", argv, environ, AT_EMPTY_PATH);
    return report(-1);
}

static int op_bind_open(const char *src, const char *dst, const char *spec) {
    int flags;
    if (parse_open_flags(spec, &flags)) return usage();
    if (unshare(CLONE_NEWNS) != 0) return setup_failure("unshare(CLONE_NEWNS)");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return setup_failure("mount private");
    if (mount(src, dst, NULL, MS_BIND, NULL) != 0) return report(-1);
    return report(open(dst, flags, 0644));
}

static int op_unshare_open(const char *path, const char *spec) {
    int flags;
    if (parse_open_flags(spec, &flags)) return usage();
    if (unshare(CLONE_NEWNS) != 0) return report(-1);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return setup_failure("mount private");
    return report(open(path, flags, 0644));
}

static int op_rename_open(const char *dir, const char *newdir, const char *path, const char *spec) {
    int flags;
    if (parse_open_flags(spec, &flags)) return usage();
    if (rename(dir, newdir) != 0) return report(-1);
    int fd = open(path, flags, 0644);
    int e = errno;
    if (rename(newdir, dir) != 0) return setup_failure("rename back");
    errno = e;
    return report(fd);
}

static int op_copy_exec(char **argv) {
    int src = open(argv[0], O_RDONLY | O_CLOEXEC);
    if (src < 0) return report(-1);
    int dst = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (dst < 0) return report(-1);
    char buf[65536];
    ssize_t n;
    while ((n = read(src, buf, sizeof buf)) > 0) {
        if (write(dst, buf, (size_t)n) != n) return setup_failure("write copy");
    }
    if (n < 0) return report(-1);
    close(dst);
    fflush(stdout);
    extern char **environ;
    execve(argv[1], argv + 1, environ);
    return report(-1);
}

// Anonymous memory (or a memfd) made executable.
static int op_anon_exec(const char *how) {
    if (strcmp(how, "mmap") == 0) {
        void *m = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return report(m == MAP_FAILED ? -1 : 0);
    }
    if (strcmp(how, "mprotect") == 0) {
        void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return setup_failure("mmap PROT_WRITE");
        return report(mprotect(m, 4096, PROT_READ | PROT_EXEC));
    }
    if (strcmp(how, "memfd") == 0) {
        int m = (int)syscall(SYS_memfd_create, "armor-code", 0);
        if (m < 0) return setup_failure("memfd_create");
        if (ftruncate(m, 4096) != 0) return setup_failure("ftruncate memfd");
        void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, m, 0);
        return report(p == MAP_FAILED ? -1 : 0);
    }
    return usage();
}

// PATH executed by a child that leads a new session with a pty as its controlling terminal.
static int op_tty_exec(char **argv) {
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) return setup_failure("fork");
    if (child == 0) {
        if (setsid() < 0) _exit(setup_failure("setsid"));
        int master = posix_openpt(O_RDWR | O_NOCTTY);
        if (master < 0 && errno == ENOENT) {
            // A root without /dev/ptmx: a devpts instance of our own (in our mount namespace
            // when --root made one).
            mkdir("/dev", 0755);
            mkdir("/dev/pts", 0755);
            if (mount("devpts", "/dev/pts", "devpts", 0, "newinstance,ptmxmode=0666") != 0)
                _exit(setup_failure("mount devpts"));
            master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY);
        }
        if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0)
            _exit(setup_failure("posix_openpt"));
        char *name = ptsname(master);
        if (!name) _exit(setup_failure("ptsname"));
        int slave = open(name, O_RDWR);
        if (slave < 0) _exit(setup_failure("open pts"));
        if (ioctl(slave, TIOCSCTTY, 0) != 0) _exit(setup_failure("TIOCSCTTY"));
        extern char **environ;
        execve(argv[0], argv, environ);
        _exit(report(-1));
    }
    int status;
    if (waitpid(child, &status, 0) != child) return setup_failure("waitpid");
    return WIFEXITED(status) ? WEXITSTATUS(status) : setup_failure("child killed");
}

// race-exec: a second thread rewrites the argument between "ok" and "xx" while the first
// executes PATH with it.
static char race_arg[3] = "ok";

static void *race_flipper(void *unused) {
    (void)unused;
    volatile char *a = race_arg;
    for (;;) {
        a[0] = 'x';
        a[1] = 'x';
        a[0] = 'o';
        a[1] = 'k';
    }
    return NULL;
}

static const char *race_path;

// The exec from a second thread (mode `thread`): the kernel gives it the leader's pid.
static void *race_execer(void *unused) {
    (void)unused;
    char *args[] = {(char *)race_path, race_arg, NULL};
    char *env[] = {"ARMOR_OP_RACE=1", NULL};
    execve(race_path, args, env);
    _exit(errno == EPERM ? 101 : 102);
    return NULL;
}

// N execs of PATH (a copy of armor-op), each by a child whose second thread rewrites the
// argument meanwhile (mode `thread`: the second thread execs, the first rewrites); reports how
// each ended: the program ran with `ok` or with something else, the exec was denied (EPERM) or
// the child was killed.
static int op_race_exec(const char *path, const char *count, const char *mode) {
    int n = atoi(count);
    int by_thread = mode && strcmp(mode, "thread") == 0;
    race_path = path;
    int listed = 0, unlisted = 0, denied = 0, killed = 0, other = 0;
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        pid_t child = fork();
        if (child < 0) return setup_failure("fork");
        if (child == 0) {
            pthread_t t;
            if (by_thread) {
                if (pthread_create(&t, NULL, race_execer, NULL) != 0) _exit(99);
                race_flipper(NULL);
            }
            if (pthread_create(&t, NULL, race_flipper, NULL) != 0) _exit(99);
            char *args[] = {(char *)path, race_arg, NULL};
            char *env[] = {"ARMOR_OP_RACE=1", NULL};
            execve(path, args, env);
            _exit(errno == EPERM ? 101 : 102);
        }
        int status;
        if (waitpid(child, &status, 0) != child) return setup_failure("waitpid");
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) killed++;
        else if (WIFEXITED(status) && WEXITSTATUS(status) == 10) listed++;
        else if (WIFEXITED(status) && WEXITSTATUS(status) == 11) unlisted++;
        else if (WIFEXITED(status) && WEXITSTATUS(status) == 101) denied++;
        else other++;
    }
    printf("armor-op: race listed=%d unlisted=%d denied=%d killed=%d other=%d\n", listed,
           unlisted, denied, killed, other);
    return 0;
}

// PATH's content executed from a file that no longer has a name (unlinked while open).
static int op_unlinked_exec(char **argv) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.unlinked", argv[0]) >= (int)sizeof tmp) return usage();
    int src = open(argv[0], O_RDONLY | O_CLOEXEC);
    if (src < 0) return setup_failure("open");
    int dst = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (dst < 0) return setup_failure("create copy");
    char buf[65536];
    ssize_t n;
    while ((n = read(src, buf, sizeof buf)) > 0) {
        if (write(dst, buf, (size_t)n) != n) return setup_failure("write copy");
    }
    if (n < 0) return setup_failure("read");
    close(dst);
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return setup_failure("open copy");
    if (unlink(tmp) != 0) return setup_failure("unlink copy");
    fflush(stdout);
    extern char **environ;
    syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
    return report(-1);
}

// One syscall by name (see the usage above); the report is its result.
static int op_sys(const char *name) {
    if (strcmp(name, "ptrace") == 0) return report(ptrace(PTRACE_TRACEME, 0, NULL, NULL));
    if (strcmp(name, "setuid") == 0) return report(setuid(getuid()));
    if (strcmp(name, "unshare") == 0) return report(unshare(CLONE_NEWUTS));
    if (strcmp(name, "mount") == 0) {
        if (unshare(CLONE_NEWNS) != 0) return setup_failure("unshare(CLONE_NEWNS)");
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return setup_failure("mount private");
        return report(mount("armor", "/tmp", "tmpfs", 0, NULL));
    }
    if (strcmp(name, "init_module") == 0) return report(syscall(SYS_init_module, NULL, 0UL, ""));
    if (strcmp(name, "getppid") == 0) return report(getppid() > 0 ? 0 : -1);
    return usage();
}

static int op_pipe(void) {
    int p[2];
    if (pipe(p) != 0) return setup_failure("pipe");
    char c = 'x';
    if (write(p[1], &c, 1) != 1) return report(-1);
    return report(read(p[0], &c, 1));
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    // Executed by `race-exec`: the exit status says which argument arrived.
    if (getenv("ARMOR_OP_RACE")) return argc > 1 && strcmp(argv[1], "ok") == 0 ? 10 : 11;
    // Executed by `exec-args`: whatever the arguments, the exec itself is the operation.
    if (getenv("ARMOR_OP_EXECUTED")) {
        unsetenv("ARMOR_OP_EXECUTED");
        return report(0);
    }
    int i = 1;
    int procs_fd = -1;
    const char *root = NULL, *exe = NULL, *uid = NULL, *aa_exec = NULL, *via = NULL;
    for (;;) {
        if (i + 1 < argc && strcmp(argv[i], "--cgroup") == 0) {
            if (join_cgroup(argv[i + 1]) != 0) return setup_failure("joining the cgroup");
        } else if (i + 1 < argc && strcmp(argv[i], "--cgroup-procs") == 0) {
            procs_fd = open(argv[i + 1], O_WRONLY);
            if (procs_fd < 0) return setup_failure("opening cgroup.procs");
        } else if (i + 1 < argc && strcmp(argv[i], "--cgroup-fd") == 0) {
            procs_fd = atoi(argv[i + 1]);
        } else if (i + 1 < argc && strcmp(argv[i], "--root") == 0) {
            root = argv[i + 1];
        } else if (i + 1 < argc && strcmp(argv[i], "--uid") == 0) {
            uid = argv[i + 1];
        } else if (i + 1 < argc && strcmp(argv[i], "--exe") == 0) {
            exe = argv[i + 1];
        } else if (i + 1 < argc && strcmp(argv[i], "--aa-exec") == 0) {
            aa_exec = argv[i + 1];
        } else if (i + 1 < argc && strcmp(argv[i], "--via") == 0) {
            via = argv[i + 1];
        } else {
            break;
        }
        i += 2;
    }
    // Before the root: /proc is not in it. The onexec label survives setuid.
    if (aa_exec && set_aa_exec(aa_exec) != 0) return setup_failure("writing attr/exec");
    if (root && enter_root(root) != 0) return SETUP_FAILURE;
    if (uid) {
        int u = atoi(uid);
        if (setgroups(0, NULL) != 0 || setgid(u) != 0 || setuid(u) != 0) return setup_failure("setuid");
    }
    if (exe) {
        // Re-exec as EXE: argv = EXE --cgroup-fd N OP ARGS...
        // With --via: argv = VIA --exe EXE --cgroup-fd N OP ARGS..., and VIA execs EXE.
        char fdbuf[16];
        snprintf(fdbuf, sizeof fdbuf, "%d", procs_fd);
        char **nargv = calloc((size_t)argc + 6, sizeof *nargv);
        if (!nargv) return setup_failure("calloc");
        int k = 0;
        if (via) {
            nargv[k++] = (char *)via;
            nargv[k++] = "--exe";
        }
        nargv[k++] = (char *)exe;
        if (procs_fd >= 0) {
            nargv[k++] = "--cgroup-fd";
            nargv[k++] = fdbuf;
        }
        for (int j = i; j < argc; j++) nargv[k++] = argv[j];
        nargv[k] = NULL;
        fflush(stdout);
        execv(via ? via : exe, nargv);
        return setup_failure(via ? "exec --via" : "exec --exe");
    }
    if (procs_fd >= 0) {
        if (write(procs_fd, "0\n", 2) != 2) return setup_failure("joining the cgroup (fd)");
        close(procs_fd);
    }
    if (i >= argc) return usage();
    const char *op = argv[i];
    int n = argc - i - 1;
    char **a = argv + i + 1;
    if (strcmp(op, "exec") == 0 && n >= 1) {
        fflush(stdout);
        execv(a[0], a);
        return report(-1);
    }
    if (strcmp(op, "exec-args") == 0 && n >= 1) {
        // PATH (a copy of armor-op) with any arguments: it reports the exec and nothing else.
        fflush(stdout);
        if (setenv("ARMOR_OP_EXECUTED", "1", 1) != 0) return setup_failure("setenv");
        execv(a[0], a);
        return report(-1);
    }
    if (strcmp(op, "open") == 0 && n == 2) return op_open(a[0], a[1]);
    if (strcmp(op, "socket") == 0 && n == 3) return op_socket(a[0], a[1], a[2]);
    if (strcmp(op, "cap") == 0 && (n == 1 || n == 2)) return op_cap(a[0], n == 2 ? a[1] : NULL);
    if (strcmp(op, "chroot-open") == 0 && n == 3) return op_chroot_open(a[0], a[1], a[2]);
    if (strcmp(op, "ok") == 0) return report(0);
    if (strcmp(op, "fexec") == 0 && n >= 1) {
        int fd = open(a[0], O_PATH | O_CLOEXEC);
        if (fd < 0) return setup_failure("open O_PATH");
        fflush(stdout);
        extern char **environ;
        syscall(SYS_execveat, fd, "", a, environ, AT_EMPTY_PATH);
        return report(-1);
    }
    if (strcmp(op, "open-n") == 0 && n == 3) {
        int flags;
        if (parse_open_flags(a[1], &flags)) return usage();
        long count = strtol(a[2], NULL, 10), rc = 0;
        for (long k = 0; k < count; k++) {
            rc = open(a[0], flags, 0644);
            if (rc >= 0) close((int)rc);
        }
        return report(rc);
    }
    if (strcmp(op, "procfd-open") == 0 && n == 2) {
        int flags;
        if (parse_open_flags(a[1], &flags)) return usage();
        int fd = open(a[0], O_PATH);
        if (fd < 0) return setup_failure("open O_PATH");
        char via[64];
        snprintf(via, sizeof via, "/proc/self/fd/%d", fd);
        return report(open(via, flags, 0644));
    }
    if (strcmp(op, "open-count") == 0 && n == 2) {
        long count = strtol(a[1], NULL, 10), ok = 0;
        for (long k = 0; k < count; k++) {
            int fd = open(a[0], O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                ok++;
                close(fd);
            }
        }
        printf("armor-op: opened %ld of %ld\n", ok, count);
        return 0;
    }
    if (strcmp(op, "tree-open") == 0 && n == 2) return op_tree_open(a[0], a[1]);
    if (strcmp(op, "by-handle") == 0 && n == 1) return op_by_handle(a[0]);
    if (strcmp(op, "procroot-open") == 0 && n == 1) return op_procroot_open(a[0]);
    if (strcmp(op, "scm-read") == 0 && n == 1) return op_scm_read(a[0]);
    if (strcmp(op, "map-exec") == 0 && n == 1) return op_map_exec(a[0], 0);
    if (strcmp(op, "mprotect-exec") == 0 && n == 1) return op_map_exec(a[0], 1);
    if (strcmp(op, "pipe") == 0 && n == 0) return op_pipe();
    if (strcmp(op, "memfd-exec") == 0 && n >= 1) return op_memfd_exec(a);
    if (strcmp(op, "bind-open") == 0 && n == 3) return op_bind_open(a[0], a[1], a[2]);
    if (strcmp(op, "unshare-open") == 0 && n == 2) return op_unshare_open(a[0], a[1]);
    if (strcmp(op, "rename-open") == 0 && n == 4) return op_rename_open(a[0], a[1], a[2], a[3]);
    if (strcmp(op, "copy-exec") == 0 && n >= 3) return op_copy_exec(a);
    if (strcmp(op, "anon-exec") == 0 && n == 1) return op_anon_exec(a[0]);
    if (strcmp(op, "tty-exec") == 0 && n >= 1) return op_tty_exec(a);
    if (strcmp(op, "unlinked-exec") == 0 && n >= 1) return op_unlinked_exec(a);
    if (strcmp(op, "sys") == 0 && n == 1) return op_sys(a[0]);
    if (strcmp(op, "race-exec") == 0 && (n == 2 || n == 3))
        return op_race_exec(a[0], a[1], n == 3 ? a[2] : NULL);
    if (strcmp(op, "unlink") == 0 && n == 1) return report(unlink(a[0]));
    if (strcmp(op, "truncate") == 0 && n == 1) return report(truncate(a[0], 0));
    if (strcmp(op, "chmod") == 0 && n == 1) return report(chmod(a[0], 0600));
    if (strcmp(op, "chown") == 0 && n == 1) return report(chown(a[0], 65534, 65534));
    if (strcmp(op, "rename") == 0 && n == 2) return report(rename(a[0], a[1]));
    if (strcmp(op, "link") == 0 && n == 2) return report(link(a[0], a[1]));
    return usage();
}
