"""The jail's seccomp filters, compiled with libseccomp (through ``pyseccomp``).

Two programs, both "allow by default, refuse a list":

- :func:`jail_filter`, loaded by bubblewrap right before it starts the host program: no
  namespaces or mounts, no tracing or reading other processes, no kernel keyring, BPF,
  io_uring or module loading, no new processes or threads, no sockets, no memory files or
  message queues, no inotify, no asynchronous I/O contexts, no file leases or locks, no change
  to any file's metadata, no terminal injection, and no way to drop the parent-death signal
  that ends the jail with its parent.
- :func:`no_exec_filter`, loaded by the host program itself once it has started: no
  ``execve`` (the first filter has to let bubblewrap start the interpreter).

Refused calls fail with EPERM (``clone3`` with ENOSYS, so that the C library falls back to
``clone``, which is refused too); calls from another architecture's ABI kill the process.
"""

from __future__ import annotations

import errno
import os
import termios

DENIED = (
    # namespaces, mounts and roots
    "setns", "unshare", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount",
    "fsconfig", "fspick", "mount_setattr",
    # other processes and the kernel
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "pidfd_open", "perf_event_open",
    "keyctl", "add_key", "request_key", "bpf", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "syslog", "iopl", "ioperm", "name_to_handle_at", "open_by_handle_at",
    "vhangup", "personality",
    # new processes and threads: a controller needs neither
    "fork", "vfork", "clone",
    # sockets: the host talks over inherited pipes only
    "socket", "socketpair",
    # System V IPC and POSIX message queues: their memory is outside the address-space limit
    "shmget", "shmat", "shmctl", "shmdt", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semctl",
    "semtimedop", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    # memory files: shared memory that stays alive through a one-page mapping, outside the limit
    "memfd_create", "memfd_secret",
    # per-user kernel resources charged to the uid outside (root, when bubblewrap is started by root), and
    # host-wide ones: asynchronous I/O contexts draw on one count for the whole machine (fs.aio-max-nr)
    "inotify_init", "inotify_init1", "inotify_add_watch", "fanotify_init", "fanotify_mark",
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    # file locks on files other processes read, and flushing every file system of the host
    "flock", "sync", "syncfs",
    # file metadata: nothing in the jail is the controller's to change
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime", "utimes",
    "futimesat", "utimensat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
    "fremovexattr", "mknod", "mknodat",
)


PR_SET_PDEATHSIG = 1
F_SETLEASE, F_NOTIFY = 1024, 1026
F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW = 6, 7, 37, 38


class SeccompUnavailable(RuntimeError):
    """libseccomp (or its Python binding) is missing."""


def _library():
    try:
        import pyseccomp
    except (ImportError, OSError) as error:  # the binding loads libseccomp.so.2 at import
        raise SeccompUnavailable(f"libseccomp cannot be loaded ({error}); install it (Debian/Ubuntu: apt-get "
                                 "install libseccomp2) and the Python package pyseccomp") from None
    return pyseccomp


def _compiled(seccomp_filter) -> bytes:
    descriptor = os.memfd_create("trace-control-seccomp", 0)
    try:
        with os.fdopen(os.dup(descriptor), "wb") as stream:
            seccomp_filter.export_bpf(stream)
        os.lseek(descriptor, 0, os.SEEK_SET)
        return os.read(descriptor, 1 << 20)
    finally:
        os.close(descriptor)


def jail_filter() -> bytes:
    """The BPF program bubblewrap loads for the host program (see the module doc)."""
    seccomp = _library()
    refused = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED:
        refused.add_rule(seccomp.ERRNO(errno.EPERM), name)
    refused.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    # the parent-death signal bubblewrap set is what ends the jail if the trainer dies: it stays
    refused.add_rule(seccomp.ERRNO(errno.EPERM), "prctl", seccomp.Arg(0, seccomp.EQ, PR_SET_PDEATHSIG))
    # file leases, locks and directory notices on files the jail can read: its uid owns root's files outside,
    # and a lease holds every other opener of that file (the host's ld.so.cache, the stdlib) for 45 s a time
    for command in (F_SETLEASE, F_NOTIFY, F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW):
        refused.add_rule(seccomp.ERRNO(errno.EPERM), "fcntl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, command))
    for request in (termios.TIOCSTI, getattr(termios, "TIOCLINUX", 0x541C)):
        refused.add_rule(seccomp.ERRNO(errno.EPERM), "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    return _compiled(refused)


def no_exec_filter() -> bytes:
    """The BPF program the host program loads for itself once started: no ``execve``."""
    seccomp = _library()
    refused = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in ("execve", "execveat"):
        refused.add_rule(seccomp.ERRNO(errno.EPERM), name)
    return _compiled(refused)

