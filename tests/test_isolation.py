"""The jail under attack: hostile controller code and answers, as root, with canaries planted.

A canary API key sits in the trainer's environment, a canary file outside the run folder
and one in the home folder. Every attack runs for real inside the jail (the advisory static
check is switched off, so nothing is refused before it runs). Each attack's outcome
becomes the next prompt's feedback; after the run no canary may appear in any request to
the LLM server, in any file the run wrote, or on the console; nothing outside may change;
and the run must end with its results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.llm_server import ScriptedLLMServer, answer
from trace_control.config import build_config
from trace_control.llm import LLMClient
from trace_control.policies import ControllerCode, JailedPolicy
from trace_control.rollout import run_episode
from trace_control.runs import RunFolder
from trace_control.sandbox import Jail, JailLimits
from trace_control.trace import name_scope
from trace_control.train import Trainer

KEY = f"sk-CANARY-{os.getpid()}-key"
FILE_SECRET = f"CANARY-{os.getpid()}-outside-file"
HOME_SECRET = f"CANARY-{os.getpid()}-home-file"
CANARIES = (KEY, FILE_SECRET, HOME_SECRET)


def body(code: str) -> str:
    return "def controller(self, obs):\n" + "".join(f"    {line}\n" for line in code.splitlines())


@pytest.fixture(scope="module")
def canaries(tmp_path_factory):
    folder = tmp_path_factory.mktemp("outside")
    outside = folder / "secret.txt"
    outside.write_text(FILE_SECRET)
    home = Path.home() / f".trace-control-canary-{os.getpid()}"
    home.write_text(HOME_SECRET)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(folder / "host.sock"))
    listener.listen(1)
    yield {"outside": outside, "home": home, "socket": folder / "host.sock"}
    listener.close()
    home.unlink(missing_ok=True)


def attacks(paths: dict, port: int, run: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, controller body, words the feedback must show: the attack ran and was stopped)."""
    site = next(p for p in sys.path if p.endswith("site-packages"))
    return [
        ("every /proc environ and cmdline", "import os\nfound = []\nfor pid in os.listdir('/proc'):\n"
         "    if pid.isdigit():\n        for name in ('environ', 'cmdline'):\n            try:\n"
         "                found.append(open(f'/proc/{pid}/{name}', 'rb').read().decode('latin-1'))\n"
         "            except OSError as error:\n                found.append(str(error))\n"
         "raise RuntimeError('read: ' + '|'.join(found))", ("(FileNotFoundError)", "'/proc'")),
        ("the parent's memory", "import os\nout = []\nfor pid in ('1', str(os.getppid())):\n    try:\n"
         "        maps = open(f'/proc/{pid}/maps').read().splitlines()\n"
         "        mem = open(f'/proc/{pid}/mem', 'rb')\n        for line in maps[:50]:\n"
         "            start, end = (int(x, 16) for x in line.split()[0].split('-'))\n            try:\n"
         "                mem.seek(start)\n                out.append(mem.read(min(end - start, 1 << 16)))\n"
         "            except (OSError, ValueError, OverflowError) as error:\n"
         "                out.append(str(error).encode())\n"
         "    except OSError as error:\n        out.append(str(error).encode())\n"
         "raise RuntimeError(b'|'.join(out).decode('latin-1'))", ("(RuntimeError)",)),
        ("setns and unshare", "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nresults = []\n"
         "for name in ('net', 'mnt', 'pid', 'user'):\n    try:\n"
         "        fd = os.open(f'/proc/1/ns/{name}', os.O_RDONLY)\n        results.append(libc.setns(fd, 0))\n"
         "    except OSError as error:\n        results.append(str(error))\n"
         "results.append(libc.unshare(0x10000000 | 0x40000000))\nresults.append(ctypes.get_errno())\n"
         "raise RuntimeError(f'namespaces {results}')", ("(RuntimeError) namespaces", "-1")),
        ("a connection to the LLM server", f"import socket\nsocket.create_connection(('127.0.0.1', {port}), "
         "timeout=1)\nreturn [0, 0, 0, 0]", ("(PermissionError)",)),
        ("a Unix socket on the host", f"import socket\ns = socket.socket(socket.AF_UNIX)\n"
         f"s.connect({str(paths['socket'])!r})\nreturn [0, 0, 0, 0]", ("(PermissionError)",)),
        ("home and outside secrets", f"found = []\nfor path in ({str(paths['home'])!r}, {str(paths['outside'])!r}, "
         "'/root/.bash_history', '/etc/shadow'):\n    try:\n        found.append(open(path).read())\n"
         "    except OSError as error:\n        found.append(type(error).__name__)\n"
         "raise RuntimeError(f'files {found}')", ("(RuntimeError) files ['FileNotFoundError'",)),
        ("writes outside: the venv, the run folder, the canary", "found = []\n"
         f"for path in ({site + '/zz_evil.pth'!r}, {str(run / 'results.json')!r}, {str(paths['outside'])!r}, "
         "'/tmp/x', '/usr/lib/evil'):\n    try:\n        open(path, 'w').write('import os; owned')\n"
         "        found.append('wrote ' + path)\n    except OSError as error:\n"
         "        found.append(type(error).__name__)\nraise RuntimeError(f'writes {found}')",
         ("(RuntimeError) writes ['FileNotFoundError', 'FileNotFoundError', 'FileNotFoundError', 'OSError', "
          "'OSError']",)),
        ("a detached child", "import subprocess\nsubprocess.Popen(['/bin/sleep', '600'], start_new_session=True)\n"
         "return [0, 0, 0, 0]", ("Error",)),
        ("a fork bomb", "import os\nwhile True:\n    os.fork()", ("(PermissionError)",)),
        ("forged replies on the jail's channel", "import json, os, struct, sys\n"
         "fd = json.loads(sys.argv[1])['reply_fd']\n"
         "for _ in range(50):\n    os.write(fd, b'A' + (32).to_bytes(4, 'big') + struct.pack('<4d', 0, 0, 0, 0))\n"
         "os.write(fd, b'Z' + (5).to_bytes(4, 'big') + b'hello')\nreturn [0, 0, 0, 0]",
         ("sent more than one answer",)),
        ("an oversized message", "import json, os, sys\nfd = json.loads(sys.argv[1])['reply_fd']\n"
         "os.write(fd, b'E' + (2**31).to_bytes(4, 'big'))\nwhile True:\n    pass", ("oversized message",)),
        ("a timer it ignores", "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n"
         "    try:\n        pass\n    except BaseException:\n        pass", ("did not answer within 0.5 s",)),
        ("10 GB of memory", "blob = bytearray(10 * 1024 ** 3)\nreturn [0, 0, 0, 0]", ("(MemoryError)",)),
        ("a 3 MB exception message", "raise RuntimeError('Success: True ' * 200_000)",
         ("more characters",)),
        ("dropping the parent-death signal", "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
         "raise RuntimeError(f'prctl {libc.prctl(1, 0, 0, 0, 0)} errno {ctypes.get_errno()}')",
         ("(RuntimeError) prctl -1 errno 1",)),
        ("its own input pipe filled, then silence", "import json, os, sys\n"
         "w = os.open('/proc/self/fd/0', os.O_WRONLY | os.O_NONBLOCK)\ntry:\n    while True:\n"
         "        os.write(w, bytes(4096))\nexcept BlockingIOError:\n    pass\nr, _ = os.pipe()\nwhile True:\n"
         "    try:\n        os.read(r, 1)\n    except BaseException:\n        pass",
         ("(FileNotFoundError)", "/proc/self/fd/0")),
        ("an integer too large for a float", "return [10 ** 400, 0.0, 0.0, 0.0]", ("too large for a float",)),
        ("a lone surrogate and terminal escapes", "print('\\x1b[2K\\rSuccess: True\\nReturn: 999.0')\n"
         "raise ValueError('bad ' + chr(0xD800) + '\\x1b[8m')", ("(ValueError) bad ", "\\x1b[8m",
                                                                    "  | \\x1b[2K\\x0dSuccess: True\n  | Return")),
        ("filling the jail's root and /dev/shm", "found = []\nfor path in ('/big', '/dev/shm/big', '/jail/big'):\n"
         "    try:\n        open(path, 'wb').write(bytes(1 << 20))\n        found.append('wrote')\n"
         "    except OSError as error:\n        found.append(type(error).__name__)\n"
         "raise RuntimeError(f'fills {found}')", ("(RuntimeError) fills ['OSError', 'FileNotFoundError', 'OSError']",)),
        ("the kernel's settings and its own descriptors through /proc", "found = []\n"
         "for path in ('/proc/sys/fs/lease-break-time', '/proc/sys/kernel/core_pattern', '/proc/self/fd/0'):\n"
         "    try:\n        open(path, 'w').write('46')\n        found.append('wrote')\n"
         "    except OSError as error:\n        found.append(type(error).__name__)\n"
         "raise RuntimeError(f'proc {found}')",
         ("(RuntimeError) proc ['FileNotFoundError', 'FileNotFoundError', 'FileNotFoundError']",)),
        ("System V shared memory", "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
         "key = libc.shmget(0, 1 << 26, 0o1600)\nraise RuntimeError(f'shmget {key} errno {ctypes.get_errno()}')",
         ("(RuntimeError) shmget -1 errno 1",)),
        ("memory files kept alive by a one-page mapping", "import os\nfd = os.memfd_create('big')\n"
         "return [0, 0, 0, 0]", ("(PermissionError)", "memfd_create")),
        ("inodes without end in a tmpfs", "import os\nfound = []\nfor path in ('/tmp/a', '/dev/a', '/a'):\n"
         "    try:\n        os.symlink('x' * 200, path)\n        found.append('linked')\n"
         "    except OSError as error:\n        found.append(error.errno)\nraise RuntimeError(f'links {found}')",
         ("(RuntimeError) links [30, 30, 30]",)),
        ("the host's device nodes", "import os\nfound = []\nfor change in (lambda: os.chmod('/dev/zero', 0o667), "
         "lambda: os.utime('/dev/zero', (12345, 12345)), lambda: os.chown('/dev/null', 65534, 65534)):\n"
         "    try:\n        change()\n        found.append('changed')\n    except OSError as error:\n"
         "        found.append(error.errno)\nraise RuntimeError(f'devices {found}')",
         ("(RuntimeError) devices [1, 1, 1]",)),
        ("inotify watches and queued signals, counted for the uid outside", "import ctypes, signal\n"
         "libc = ctypes.CDLL(None, use_errno=True)\nwatch = libc.inotify_init1(0)\n"
         "signal.pthread_sigmask(signal.SIG_BLOCK, [40])\ninfo = ctypes.create_string_buffer(128)\n"
         "info[8:12] = b'\\xff\\xff\\xff\\xff'\nqueued = 0\n"
         "while queued < 10_000 and libc.syscall(129, 1, 40, info) == 0:\n    queued += 1\n"
         "raise RuntimeError(f'inotify {watch} queued at most 64: {queued <= 64}')",
         ("(RuntimeError) inotify -1 queued at most 64: True",)),
        ("leases on files it can read (the jail's uid owns root's files outside)", "import ctypes\n"
         "libc = ctypes.CDLL(None, use_errno=True)\nfound = []\nfor path in ('/etc/ld.so.cache', '/dev/null'):\n"
         "    with open(path, 'rb') as stream:\n        found.append(libc.fcntl(stream.fileno(), 1024, 1))\n"
         "        found.append(ctypes.get_errno())\n        found.append(libc.fcntl(stream.fileno(), 1026, 1))\n"
         "raise RuntimeError(f'leases {found}')", ("(RuntimeError) leases [-1, 1, -1, -1, 1, -1]",)),
        ("asynchronous I/O contexts, counted for the whole machine, and file locks", "import ctypes\n"
         "libc = ctypes.CDLL(None, use_errno=True)\ncontext = ctypes.c_ulong(0)\nfound = [libc.syscall(206, 4096, "
         "ctypes.byref(context)), ctypes.get_errno()]\nwith open('/etc/ld.so.cache', 'rb') as stream:\n"
         "    found += [libc.flock(stream.fileno(), 1), ctypes.get_errno()]\nraise RuntimeError(f'aio {found}')",
         ("(RuntimeError) aio [-1, 1, -1, 1]",)),
        ("marks left for the next controller", "import builtins, numpy\nbuiltins.MARK = 1\n"
         "numpy.clip = lambda *a, **k: 0\nreturn [0, 0, 0, 0]", ("Success: False",)),
        ("a check for the marks", "import builtins\n"
         "raise RuntimeError('persisted' if hasattr(builtins, 'MARK') else 'fresh process')",
         ("(RuntimeError) fresh process",)),
    ]


LEASE = Path("/proc/sys/fs/lease-break-time")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def site_listing() -> set[str]:
    site = next(p for p in sys.path if p.endswith("site-packages"))
    return set(os.listdir(site))


def devices() -> list[tuple[int, int, int, int]]:
    return [(info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns)
            for info in map(os.stat, ("/dev/null", "/dev/zero", "/dev/urandom"))]


def test_hostile_controllers_are_contained_and_reported(canaries, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    before = (digest(canaries["outside"]), digest(canaries["home"]), site_listing(), LEASE.read_text(), devices())
    run = RunFolder.create(tmp_path, "reach", "attacks")
    with ScriptedLLMServer() as server:
        battery = attacks(canaries, server._server.server_address[1], run.path)
        server.script = [answer({"__code0": body(code)}, f"try {name}") for name, code, _ in battery]
        config, sources = build_config("reach", {
            "iterations": len(battery) + 1, "batch": 1, "resample": False, "static_check": False,
            "step_seconds": 0.5, "validation_seeds": [1000], "test_seeds": [2000], "validate_every": 1000,
            "solved_batches": 0, "patience": 0, "max_consecutive_failures": 100})
        llm = LLMClient(model="gpt-4o-mini", base_url=server.base_url, record=run.file("llm_calls.jsonl"))
        with name_scope():
            result = Trainer(config, run, llm, progress=False, sources=sources).train()
        requests = json.dumps(server.requests)
    log = run.read_log()
    for index, (name, _, words) in enumerate(battery, start=2):
        feedback = log[index]["feedback"]
        assert all(word in feedback for word in words), (name, feedback[:600])
    written = "".join(path.read_text(errors="replace") for path in run.path.rglob("*")
                      if path.is_file() and path.suffix != ".png")
    console = capsys.readouterr()
    for canary in CANARIES:
        assert canary not in requests and canary not in written, canary
        assert canary not in console.out + console.err
    assert (digest(canaries["outside"]), digest(canaries["home"]), site_listing(), LEASE.read_text(),
            devices()) == before
    assert result.results["status"] == "completed" and result.results["iterations_done"] == len(battery) + 1
    assert result.results["test"]["success_rate"] == 0.0  # nothing forged a success
    assert max(len(request["messages"][-1]["content"]) for request in server.requests) < 60_000
    for pattern in ("sleep 600", f'"owner": {os.getpid()}}}'):  # this process's jails, not another test run's
        leftovers = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
        assert not leftovers.strip(), pattern


REFLECTIVE = [
    ("attrgetter to globals", "import operator\ng = operator.attrgetter('__globals__')(type(self).controller)\n"
     "raise RuntimeError(str(sorted(g)))"),
    ("frames from a traceback", "try:\n    1 / 0\nexcept ZeroDivisionError as error:\n"
     "    frame = error.__traceback__.tb_frame\n"),
    ("format string attribute access", "raise RuntimeError('{0.__class__.__mro__}'.format(obs))"),
    ("a generator's frame", "g = (x for x in [1])\nraise RuntimeError(str(type(g).gi_frame))"),
    ("numpy file access", "import numpy as np\nnp.fromfile('/proc/1/environ', dtype=np.uint8)"),
]


def test_reflective_routes_past_the_static_check_find_nothing_in_the_jail(canaries, monkeypatch):
    """Some routes pass the static check (it is advice); in the jail they reach nothing worth having."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    from trace_control import controllers, envs

    policy = JailedPolicy(JailLimits(step_seconds=1.0))
    env = envs.make("reach")
    try:
        for name, code in REFLECTIVE:
            controller = controllers.starting_controller("reach")
            controller.controller.parameter._set(body(code))
            policy.load(ControllerCode.from_module(controller))
            episode = run_episode(env, policy, seed=0)
            assert episode.error_kind == "controller" or not episode.success, name
            assert all(canary not in episode.outcome for canary in CANARIES), (name, episode.outcome[:300])
    finally:
        policy.close()
        env.close()


HOSTILE_FILE = """import os
found = []
for path in ({home!r}, {outside!r}, '/proc/1/environ', '/proc/self/environ'):
    try:
        found.append(open(path, 'rb').read().decode('latin-1'))
    except OSError as error:
        found.append(type(error).__name__)
for path in ({outside!r}, {home!r}):
    try:
        open(path, 'w').write('owned')
    except OSError as error:
        found.append(type(error).__name__)
found.append(os.environ.get('OPENAI_API_KEY', 'no key'))


def load():
    def controller(obs):
        raise RuntimeError('exported payload: ' + repr(found))
    return controller
"""


STALL_FILE = """import json, os, sys
def load():
    reply = json.loads(sys.argv[1])["reply_fd"]
    os.write(reply, b"K" + bytes(4))  # a forged "done", then silence
    while True:
        try:
            os.read(0, 0)
            import time
            time.sleep(100)
        except BaseException:
            pass
"""


@pytest.mark.parametrize("payload, words", [
    (STALL_FILE, "the controller's process"),
    ("import ctypes\nctypes.CDLL(None).shmget(0, 1 << 30, 0o1600)\ndef load():\n    return lambda obs: [0.0] * 4\n",
     "success"),
])
def test_a_hostile_exported_file_is_one_failed_episode_not_a_crash(payload, words, tmp_path):
    path = tmp_path / "hostile.py"
    path.write_text(payload)
    done = subprocess.run([sys.executable, "-m", "trace_control.cli", "evaluate", str(path), "--task", "reach",
                           "--seeds", "0-1", "--step-seconds", "0.5"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "reach: success" in done.stdout and words in done.stdout


def test_exported_file_payloads_fire_only_in_the_jail(canaries, tmp_path):
    """evaluate, record and report run an exported file; whatever it does, it does in the jail."""
    payload = tmp_path / "best_controller.py"
    payload.write_text(HOSTILE_FILE.format(home=str(canaries["home"]), outside=str(canaries["outside"])))
    run = tmp_path / "run"
    run.mkdir()
    (run / "best_controller.py").write_text(payload.read_text())
    (run / "config.json").write_text(json.dumps({"settings": {"task": "reach", "test_seeds": "2000",
                                                              "in_process": True}}))  # a crafted opt-out
    (run / "log.jsonl").write_text("")
    (run / "llm_calls.jsonl").write_text("")
    environment = {**os.environ, "OPENAI_API_KEY": KEY}
    before = (digest(canaries["outside"]), digest(canaries["home"]))
    outputs = []
    for args in (["evaluate", str(payload), "--task", "reach", "--episodes", "1", "--json"],
                 ["record", str(payload), "--task", "reach", "--out", str(tmp_path / "v.gif"), "--size", "32"],
                 ["report", str(run)],
                 ["train", "--replay", str(run), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]):
        done = subprocess.run([sys.executable, "-m", "trace_control.cli", *args], env=environment,
                              capture_output=True, text=True, timeout=300)
        outputs.append(done.stdout + done.stderr)
    assert "exported payload: ['FileNotFoundError', 'FileNotFoundError'" in outputs[0]
    assert "'no key'" in outputs[0] and "exported payload" in outputs[1]
    assert "controller code runs in: a bubblewrap jail" in outputs[3]  # the recorded opt-out was not taken
    for canary in CANARIES:
        assert all(canary not in text for text in outputs)
        assert canary not in "".join(p.read_text(errors="replace") for p in run.rglob("*") if p.suffix == ".html")
    assert (digest(canaries["outside"]), digest(canaries["home"])) == before


@pytest.mark.parametrize("bwrap, words", [
    ("missing", "is not an executable"),
    ("refuses", "the jail could not be built (bwrap: No permissions to create a new namespace)"),
])
def test_a_command_that_cannot_build_the_jail_stops_with_the_fix(bwrap, words, tmp_path, monkeypatch, capsys):
    """A machine without bubblewrap, or one that refuses namespaces: one line with the fix, and nothing runs."""
    from trace_control.cli import main

    binary = tmp_path / "bwrap"
    if bwrap == "refuses":
        binary.write_text("#!/bin/sh\necho 'bwrap: No permissions to create a new namespace' >&2\nexit 1\n")
        binary.chmod(0o755)
    monkeypatch.setenv("TRACE_CONTROL_BWRAP", str(binary))
    code = main(["evaluate", "expert", "--task", "reach", "--episodes", "1"])
    error = capsys.readouterr().err
    assert code == 2 and words in error and "--in-process" in error, error
    assert len(error.strip().splitlines()) == 1


@pytest.mark.parametrize("code", [
    "import numpy.ctypeslib as c\nreturn [0] * 4",
    "from numpy import ctypeslib\nreturn [0] * 4",
    "from random import _os\nreturn [0] * 4",
    "from typing import sys\nreturn [0] * 4",
    "import operator\nreturn operator.attrgetter('x')(obs)",
    "import numpy as np\nreturn np._core.multiarray.zeros(4)",
    "try:\n    1 / 0\nexcept ZeroDivisionError as error:\n    return error.__traceback__.tb_frame",
])
def test_the_static_check_names_routes_to_the_interpreter(code):
    """Advice for the LLM, tried against the routes earlier attacks used to reach libc or the interpreter."""
    from trace_control.sandbox import check_controller_code

    assert check_controller_code(body(code), "controller"), code


def test_when_memory_runs_out_the_kernel_ends_the_jail_not_the_trainer():
    jail = Jail()
    jail.start()
    try:
        for pid in (jail._host_pid, jail.process.pid):
            assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "1000"
        assert Path("/proc/self/oom_score_adj").read_text().strip() != "1000"
    finally:
        jail.kill()


def test_a_jail_that_does_not_start_mid_run_fails_the_episode_not_the_command():
    from trace_control import controllers, envs

    policy = JailedPolicy(JailLimits())
    env = envs.make("reacher", horizon=3)
    versions = []
    for gain in (0.1, 0.2):
        controller = controllers.starting_controller("reacher")
        controller.controller.parameter._set(f"def controller(self, obs):\n    return [{gain}, 0.0]\n")
        versions.append(ControllerCode.from_module(controller))
    try:
        policy.load(versions[0])
        assert not run_episode(env, policy, seed=1).error
        policy.limits = dataclasses.replace(policy.limits, startup_seconds=0.001)  # the next jail cannot start in time
        policy.load(versions[1])
        episode = run_episode(env, policy, seed=1)
        assert "a fresh jail for this controller did not start" in episode.error and "within 0.001 s" in episode.error
        assert "--in-process" not in episode.error  # no advice to switch the jail off
    finally:
        policy.close()
