"""The jail: LLM-written controller code runs alone in a bubblewrap sandbox.

The trusted side (this module, in the trainer or an evaluation worker) starts
``bwrap`` with a new user, PID, network, IPC, UTS, cgroup and mount namespace, uid
65534 inside, no capabilities, no ``/proc``, no writable file system, and
read-only binds of exactly what the interpreter and numpy need (computed from the running
interpreter). Inside runs :mod:`trace_control.sandbox.host` under two seccomp filters
(:mod:`trace_control.sandbox.seccomp`) and resource limits. The environment is empty
but for a few thread settings; no descriptor is inherited but the two pipes and the
output pipe.

The jail receives the controller's source once, then observations, and answers actions.
Every frame it sends is checked here (kind, size, schema); anything else ends the episode
with a reason. Deadlines run on this side's clock; a jail that misses one is killed as a
whole (killing bubblewrap takes its PID namespace with it).
"""

from __future__ import annotations

import functools
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trace_control.sandbox import seccomp

HOST_PROGRAM = Path(__file__).with_name("host.py")
HEADER_SIZE = 5
MAX_REPLY_BYTES = 1 << 20
MAX_ACTION_VALUES = 4096
MAX_MESSAGE_CHARS = 2000
NOBODY = 65534
THREAD_SETTINGS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LC_ALL": "C.UTF-8"}
NAMESPACES = ("user", "pid", "net", "mnt", "ipc", "uts")
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom")  # the only device nodes inside; no writable /dev or /dev/shm
FIX = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap libseccomp2), or pass --in-process to run "
       "controller code unprotected in this process (only for code you trust)")


@dataclass(frozen=True)
class JailLimits:
    """What the jailed code may use. Times in seconds (on the trusted side's clock), sizes in bytes."""

    step_seconds: float = 1.0
    grace_seconds: float = 1.0
    episode_seconds: float = 120.0
    startup_seconds: float = 60.0
    memory_bytes: int = 2 << 30
    cpu_seconds: int = 900
    file_bytes: int = 1 << 20
    output_bytes: int = 4096


class JailUnavailable(RuntimeError):
    """No jail can be built here; the message says why and how to fix it."""


class JailFault(Exception):
    """The jail missed a deadline, died or broke the protocol; it has been killed. ``reason`` is feedback."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ControllerRaised(Exception):
    """The controller's code raised inside the jail. ``record`` holds type, message and frames (checked)."""

    def __init__(self, record: dict) -> None:
        super().__init__(f"({record['type']}) {record['message']}")
        self.record = record


@dataclass
class JailStatus:
    """What the trusted side saw of a running jail (read from /proc outside it, not reported by it)."""

    uid_map: str = ""
    capabilities: str = ""
    seccomp_mode: str = ""
    seccomp_filters: str = ""
    no_new_privs: str = ""
    own_namespaces: list[str] = field(default_factory=list)
    shared_namespaces: list[str] = field(default_factory=list)
    python: str = ""

    @property
    def inside_uid(self) -> int | None:
        parts = self.uid_map.split()
        return int(parts[0]) if parts else None

    def line(self) -> str:
        uid = self.inside_uid
        who = "nobody" if uid == NOBODY else f"uid {uid}"
        caps = "no capabilities" if self.capabilities.strip("0") == "" else f"capabilities {self.capabilities}"
        own = ", ".join(name.upper() if len(name) <= 3 else name for name in self.own_namespaces)
        seccomp_state = f"seccomp on ({self.seccomp_filters} filters)" if self.seccomp_mode == "2" else "seccomp OFF"
        text = (f"a bubblewrap jail: unprivileged uid {uid} ({who}) with {caps}; own {own} namespaces; "
                f"{seccomp_state}; no network; read-only view of the interpreter and numpy only")
        if self.shared_namespaces:
            text += f"; SHARED with this process: {', '.join(self.shared_namespaces)}"
        return text


# -- the command line ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _interpreter() -> tuple[str, tuple[str, ...], str, str | None]:
    """(interpreter, paths to bind read-only at their own place, numpy folder, numpy's libraries folder)."""
    import importlib.util

    executable = os.path.realpath(sys.executable)
    paths = {executable, os.path.realpath(sysconfig.get_paths()["stdlib"])}
    library_dir = sysconfig.get_config_var("LIBDIR")
    shared_library = sysconfig.get_config_var("INSTSONAME")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and library_dir and shared_library:
        candidate = os.path.join(library_dir, shared_library)
        if os.path.exists(candidate):
            paths.add(os.path.realpath(candidate))
    spec = importlib.util.find_spec("numpy")
    numpy_dir = os.path.realpath(list(spec.submodule_search_locations)[0])
    numpy_libs = os.path.join(os.path.dirname(numpy_dir), "numpy.libs")
    return executable, tuple(sorted(paths)), numpy_dir, numpy_libs if os.path.isdir(numpy_libs) else None


def _system_binds() -> list[str]:
    """The shared-library folders, as binds (or as the symlinks they are on merged-/usr systems)."""
    arguments: list[str] = []
    for path in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/lib32", "/usr/lib32"):
        if os.path.islink(path):
            arguments += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            arguments += ["--ro-bind", path, path]
    if os.path.isfile("/etc/ld.so.cache"):
        arguments += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    return arguments


def _memfd(name: str, data: bytes) -> int:
    descriptor = os.memfd_create(name, 0)
    os.write(descriptor, data)
    os.lseek(descriptor, 0, os.SEEK_SET)
    return descriptor


def bwrap_path() -> str:
    """The bubblewrap binary: ``$TRACE_CONTROL_BWRAP`` when set, else ``bwrap`` on the PATH or in /usr/bin."""
    chosen = os.environ.get("TRACE_CONTROL_BWRAP")
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise JailUnavailable(f"TRACE_CONTROL_BWRAP names {chosen}, which is not an executable: point it at "
                                  f"bwrap, or unset it; or {FIX}")
        return chosen
    path = shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.path.exists(p)), None)
    if path is None:
        raise JailUnavailable(f"bubblewrap (bwrap) is not installed: {FIX}")
    return path


# -- one jail ------------------------------------------------------------------------------------
class Jail:
    """One jailed host process. ``load`` a controller, then per episode ``begin`` and ``act``."""

    def __init__(self, limits: JailLimits | None = None, cpu: int | None = None) -> None:
        self.limits = limits or JailLimits()
        self.cpu = cpu
        self.process: subprocess.Popen | None = None
        self.status = JailStatus()
        self.output = bytearray()
        self._reply_fd = -1
        self._output_fd = -1
        self._buffer = b""
        self._episode_deadline = math.inf
        self._host_pid = 0
        self._info_fd = -1

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the jail and wait for its hello. Raises :class:`JailUnavailable` when it cannot be built."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the jail's processes without waiting for them (see :meth:`wait_ready`)."""
        bwrap = bwrap_path()
        try:
            jail_program, no_exec_program = seccomp.jail_filter(), seccomp.no_exec_filter()
        except seccomp.SeccompUnavailable as error:
            raise JailUnavailable(f"{error}; or pass --in-process (only for code you trust)") from None
        executable, paths, numpy_dir, numpy_libs = _interpreter()
        host_fd = _memfd("trace-control-host", HOST_PROGRAM.read_bytes())
        filter_fd = _memfd("trace-control-filter", jail_program)
        no_exec_fd = _memfd("trace-control-no-exec", no_exec_program)
        reply_read, reply_write = os.pipe()
        info_read, info_write = os.pipe()
        settings = {"memory_bytes": self.limits.memory_bytes, "cpu_seconds": self.limits.cpu_seconds,
                    "file_bytes": self.limits.file_bytes, "site": "/jail/site", "reply_fd": reply_write,
                    "no_exec_filter": "/jail/no-exec.bpf", "owner": os.getpid()}  # owner: to find strays
        arguments = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(NOBODY),
                     "--gid", str(NOBODY), "--hostname", "jail", "--die-with-parent", "--new-session",
                     "--cap-drop", "ALL", "--clearenv"]
        for key, value in THREAD_SETTINGS.items():
            arguments += ["--setenv", key, value]
        # no /proc at all: the kernel's settings (/proc/sys) and the jail's own descriptors stay out of reach.
        # The host's own device nodes (a read-only mount would make them unusable); their owner, mode and
        # times stay as they are because seccomp refuses every call that changes file metadata.
        arguments += ["--dir", "/dev"]
        for device in DEVICES:
            arguments += ["--dev-bind", device, device]
        # no writable file system at all: a tmpfs, even size-capped, takes inodes without limit
        # (kernel memory that no rlimit counts)
        arguments += ["--dir", "/tmp"]
        arguments += _system_binds()
        for path in paths:
            arguments += ["--ro-bind", path, path]
        arguments += ["--ro-bind", numpy_dir, "/jail/site/numpy"]
        if numpy_libs:
            arguments += ["--ro-bind", numpy_libs, "/jail/site/numpy.libs"]
        arguments += ["--ro-bind-data", str(host_fd), "/jail/host.py",
                      "--ro-bind-data", str(no_exec_fd), "/jail/no-exec.bpf",
                      "--remount-ro", "/", "--as-pid-1", "--info-fd", str(info_write), "--seccomp", str(filter_fd),
                      "--chdir", "/tmp", "--",
                      executable, "-I", "-S", "-B", "-u", "-X", "utf8", "/jail/host.py", json.dumps(settings)]
        inherited = [host_fd, filter_fd, no_exec_fd, reply_write, info_write]
        share_a_cpu(self.cpu)
        try:
            self.process = subprocess.Popen(arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, pass_fds=inherited, env={},
                                            start_new_session=True)
        except OSError as error:
            for descriptor in inherited + [reply_read, info_read]:
                os.close(descriptor)
            raise JailUnavailable(f"bubblewrap could not be started ({error}): {FIX}") from None
        for descriptor in inherited:
            os.close(descriptor)
        os.set_blocking(self.process.stdin.fileno(), False)
        self._reply_fd = reply_read
        os.set_blocking(reply_read, False)
        self._info_fd = info_read
        self._output_fd = self.process.stdout.fileno()
        self._buffer = b""
        self.output = bytearray()

    def wait_ready(self) -> None:
        """Wait for the launched jail's hello and read its status; :class:`JailUnavailable` if it never comes."""
        info_read, self._info_fd = self._info_fd, -1
        deadline = time.monotonic() + self.limits.startup_seconds
        try:
            kind, payload = self._receive(deadline, (b"H",))
        except JailFault:
            os.close(info_read)
            said = bytes(self.output).decode("utf-8", "replace").strip().splitlines()
            self.kill()
            if time.monotonic() >= deadline:
                raise JailUnavailable(f"the jail did not start within {self.limits.startup_seconds:g} s "
                                      "(a busy or stalled machine?)") from None
            detail = clean_text(said[-1]) if said else "it stopped without a word"
            raise JailUnavailable(f"the jail could not be built ({detail}): {FIX}") from None
        hello = _json_object(payload)
        self.status = self._inspect(info_read)
        for pid in (self._host_pid, self.process.pid):  # if memory runs out, the kernel ends the jail, not the trainer
            try:
                Path(f"/proc/{pid}/oom_score_adj").write_text("1000")
            except OSError:
                pass
        self.status.python = str(hello.get("python", ""))[:20]
        self.output = bytearray()

    def _inspect(self, info_read: int) -> JailStatus:
        """Read the jail's namespaces, uid map, capabilities and seccomp state from /proc, from outside."""
        with os.fdopen(info_read, "rb") as stream:
            info = _json_object(stream.read(65536))
        status = JailStatus()
        host = self._host_pid = int(info.get("child-pid", 0))  # with --as-pid-1, the host program itself
        own_ids = {name: os.stat(f"/proc/self/ns/{name}").st_ino for name in NAMESPACES}
        for name in NAMESPACES:
            try:
                jailed = os.stat(f"/proc/{host}/ns/{name}").st_ino
            except OSError:
                continue
            (status.own_namespaces if jailed != own_ids[name] else status.shared_namespaces).append(name)
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{host}/status").read_text().splitlines()
                          if ":" in line)
            status.capabilities = fields.get("CapEff", "").strip()
            status.seccomp_mode = fields.get("Seccomp", "").strip()
            status.seccomp_filters = fields.get("Seccomp_filters", "").strip()
            status.no_new_privs = fields.get("NoNewPrivs", "").strip()
            status.uid_map = " ".join(Path(f"/proc/{host}/uid_map").read_text().split())
        except OSError:
            pass
        return status

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Kill the whole jail (bubblewrap and, with it, its PID namespace)."""
        if self.process is None:
            return
        if self._host_pid and _parent_of(self._host_pid) == self.process.pid:
            try:  # the PID namespace's init: its death ends everything in the jail
                os.kill(self._host_pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._host_pid = 0
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        for descriptor in (self._reply_fd, self._info_fd):
            if descriptor >= 0:
                os.close(descriptor)
        self._reply_fd = self._info_fd = -1
        self.process = None

    close = kill

    # -- requests ------------------------------------------------------------------------------
    def load(self, source: str, filename: str) -> None:
        """Compile the controller's source in the jail. Raises ControllerRaised (e.g. a SyntaxError)."""
        request = {"source": source, "filename": filename, "step_seconds": self.limits.step_seconds}
        self._send(b"C", json.dumps(request).encode())
        self._expect_done(time.monotonic() + self.limits.startup_seconds, "while loading the controller")

    def begin(self) -> None:
        """Start an episode: a fresh controller object (``load()`` runs again)."""
        self._episode_deadline = time.monotonic() + self.limits.episode_seconds
        self.output = bytearray()
        self._send(b"B", b"")
        self._expect_done(self._step_deadline(), "while building the controller")

    def send_layout(self, layout: list[tuple[str, tuple[int, ...]]]) -> None:
        self._send(b"L", json.dumps([[name, list(shape)] for name, shape in layout]).encode())

    def act(self, values: np.ndarray) -> Any:
        """Send one observation (float64 values in layout order); return the action (numbers or plain data)."""
        self._send(b"O", values.astype("<f8", copy=False).tobytes())
        kind, payload = self._receive(self._step_deadline(), (b"A", b"J", b"E"), "while computing an action")
        if kind == b"A":
            if len(payload) % 8 or len(payload) // 8 > MAX_ACTION_VALUES:
                raise self._fault("sent a malformed action")
            return np.frombuffer(payload, dtype="<f8").copy()
        if kind == b"E":
            raise ControllerRaised(self._error_record(payload))
        try:
            return json.loads(payload)
        except (ValueError, RecursionError):
            raise self._fault("sent an action that is not JSON") from None

    def take_output(self) -> str:
        """What the controller printed since the episode began (capped)."""
        self._drain_output()
        return clean_text(bytes(self.output).decode("utf-8", "replace"))

    # -- the channel ------------------------------------------------------------------------------
    def _step_deadline(self) -> float:
        return min(time.monotonic() + self.limits.step_seconds + self.limits.grace_seconds, self._episode_deadline)

    def _send(self, kind: bytes, payload: bytes) -> None:
        """Write one frame before the step's deadline (the jail can fill its own input pipe: never block on it)."""
        if not self.alive():
            raise JailFault("the controller's process is not running")
        data = memoryview(kind + len(payload).to_bytes(4, "big") + payload)
        descriptor = self.process.stdin.fileno()
        deadline = time.monotonic() + self.limits.step_seconds + self.limits.grace_seconds
        while data:
            try:
                data = data[os.write(descriptor, data):]
                continue
            except BlockingIOError:
                pass
            except OSError:
                raise self._fault("closed its input", died=True) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._fault("stopped reading its input")
            select.select([], [descriptor], [], remaining)

    def _expect_done(self, deadline: float, doing: str) -> None:
        kind, payload = self._receive(deadline, (b"K", b"E"), doing)
        if kind == b"E":
            raise ControllerRaised(self._error_record(payload))

    def _receive(self, deadline: float, allowed: tuple[bytes, ...], doing: str = "") -> tuple[bytes, bytes]:
        while True:
            if len(self._buffer) >= HEADER_SIZE:
                kind, size = self._buffer[:1], int.from_bytes(self._buffer[1:HEADER_SIZE], "big")
                if kind not in allowed:
                    raise self._fault(f"sent an unexpected message {doing}".strip())
                if size > MAX_REPLY_BYTES:
                    raise self._fault(f"sent an oversized message ({size:,} bytes) {doing}".strip())
                if len(self._buffer) >= HEADER_SIZE + size:
                    payload = self._buffer[HEADER_SIZE:HEADER_SIZE + size]
                    self._buffer = self._buffer[HEADER_SIZE + size:]
                    if self._buffer:  # one request, one answer: anything more was not asked for
                        raise self._fault(f"sent more than one answer {doing}".strip())
                    return kind, payload
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if deadline >= self._episode_deadline:
                    raise self._fault(f"ran past the episode's {self.limits.episode_seconds:g} s limit")
                raise self._fault(f"did not answer within {self.limits.step_seconds:g} s {doing}".strip())
            # the answer is often there already (the jail runs on this CPU as soon as it is asked): read
            # first, wait only when there is nothing; ask for what the frame still needs, not a fixed size
            wanted = HEADER_SIZE + int.from_bytes(self._buffer[1:HEADER_SIZE], "big") - len(self._buffer) \
                if len(self._buffer) >= HEADER_SIZE else 0
            try:
                chunk = os.read(self._reply_fd, min(max(wanted, 4096), MAX_REPLY_BYTES))
            except BlockingIOError:
                ready, _, _ = select.select([self._reply_fd, self._output_fd], [], [], remaining)
                if self._output_fd in ready:
                    self._drain_output()
                continue
            if not chunk:
                raise self._fault(f"stopped {doing}".strip(), died=True)
            self._buffer += chunk

    def _drain_output(self, most: int = 1 << 18) -> None:
        """Read what the jail printed, keeping the first ``output_bytes``; at most ``most`` bytes per call, so a
        flood cannot hold the trusted side here (a jail that floods on blocks itself, and misses its deadline)."""
        while self.process is not None and most > 0:
            ready, _, _ = select.select([self._output_fd], [], [], 0)
            if not ready:
                return
            chunk = os.read(self._output_fd, 1 << 16)
            if not chunk:
                return
            most -= len(chunk)
            room = self.limits.output_bytes - len(self.output)
            if room > 0:
                self.output += chunk[:room]

    def _fault(self, what: str, died: bool = False) -> JailFault:
        """Kill the jail; the fault names what happened (and how the process ended, when it did)."""
        ending = ""
        if died and self.process is not None:
            try:
                code = self.process.wait(timeout=min(self.limits.grace_seconds, 1.0))  # a live one is killed
                ending = f" ({_exit_text(code)})"
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return JailFault(f"the controller's process {what}{ending}")

    def _error_record(self, payload: bytes) -> dict:
        """A checked error record: anything that is not the expected shape is a protocol fault."""
        record = _json_object(payload)
        kind, message, frames = record.get("type"), record.get("message"), record.get("frames")
        if not isinstance(kind, str) or not isinstance(message, str) or not isinstance(frames, list):
            raise self._fault("sent a malformed error report")
        checked = []
        for frame in frames[-40:]:
            if (not isinstance(frame, list) or len(frame) != 2 or not isinstance(frame[0], str)
                    or not isinstance(frame[1], int) or isinstance(frame[1], bool)):
                raise self._fault("sent a malformed error report")
            checked.append((frame[0][:200], frame[1]))
        return {"type": _printable(clean_text(kind[:100])) or "Error", "message": cap_text(clean_text(message)),
                "frames": checked}


# the CPUs this process may use, read before any thread is pinned: worker processes started later
# inherit a pinned thread's single CPU, so they are handed this set (see runners.py)
USABLE_CPUS = tuple(sorted(os.sched_getaffinity(0)))


def share_a_cpu(cpu: int | None = None) -> None:
    """Pin the calling thread (and so the jail it starts next) to one CPU.

    Every controller call is a round trip between this thread and the jail, and neither runs
    while the other works: on one CPU the hand-over is a plain context switch, across two it
    costs a cross-CPU wake-up, several times slower (see benchmarks/suite.py). ``cpu`` defaults
    to the one the thread runs on now; a CPU it may not use is ignored.
    """
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        return
    if cpu is None:
        try:
            cpu = int(Path("/proc/thread-self/stat").read_text().rsplit(")", 1)[1].split()[36])
        except (OSError, ValueError, IndexError):
            return
    chosen = sorted(allowed)[cpu % len(allowed)] if cpu not in allowed else cpu
    os.sched_setaffinity(0, {chosen})


def cap_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def clean_text(text: str) -> str:
    """Text the controller produced, safe for a terminal, a prompt and a UTF-8 file.

    Control characters (escape sequences, NUL, carriage returns) become ``\\xNN`` escapes, lone
    surrogates become U+FFFD; line breaks and tabs stay.
    """
    text = text.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(text) else text
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char in "\n\t" else f"\\x{ord(char):02x}" if ord(char) < 256
                   else f"\\u{ord(char):04x}" for char in text)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _printable(text: str) -> str:
    return "".join(char for char in text if char.isprintable())


def _json_object(payload: bytes) -> dict:
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _parent_of(pid: int) -> int | None:
    """The parent process of ``pid`` (to kill only a process that is still ours), or None."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code > 128 and code - 128 in signal.Signals.__members__.values():
        return f"killed by {signal.Signals(code - 128).name}"
    return f"exit code {code}"
