"""What a sandboxed run can see and do: the guarantees the grader's isolation rests on."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from traindeep.course import sandbox

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(sandbox.mode() is None, reason="bwrap cannot create namespaces here")


def run(code, **limits):
    limits = {"timeout": 60, **limits}
    return sandbox.run([sys.executable, "-c", code], b"", sandbox.Limits(**limits))


def report(code, **limits):
    done = run(code, **limits)
    assert done.returncode == 0 and done.killed is None, (done.returncode, done.killed, done.stderr[-2000:])
    return json.loads(done.stdout)


def test_a_run_is_unprivileged_alone_and_offline():
    seen = report("""
import json, os, socket
status = dict(line.split(':\\t') for line in open('/proc/self/status').read().splitlines() if ':\\t' in line)
try:
    socket.create_connection(('1.1.1.1', 53), timeout=2)
    net = 'connected'
except OSError as error:
    net = type(error).__name__
print(json.dumps({'uid': os.getuid(), 'caps': [status[k].strip() for k in ('CapEff', 'CapPrm', 'CapBnd')],
                  'nnp': status['NoNewPrivs'].strip(), 'pids': sorted(int(p) for p in os.listdir('/proc')
                  if p.isdigit()), 'net': net, 'cwd': os.getcwd()}))
""")
    assert seen["uid"] != 0 and seen["caps"] == ["0000000000000000"] * 3
    assert seen["net"] != "connected" and seen["cwd"] == sandbox.WORK
    assert len(seen["pids"]) <= 6, "only the run's own processes are visible"
    if sandbox.mode() == "root":
        assert seen["nnp"] == "1" and seen["uid"] in sandbox.UID_POOL


def test_the_repository_solutions_and_home_are_invisible(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("answer")
    seen = report(f"""
import json, os
paths = [{str(ROOT / 'solutions')!r}, {str(ROOT)!r}, {str(secret)!r}, os.path.expanduser('~root'), '/work']
print(json.dumps({{p: os.path.exists(p) and sorted(os.listdir(p)) if os.path.isdir(p) else os.path.exists(p)
                   for p in paths}}))
""")
    assert seen[str(ROOT / "solutions")] is False and seen[str(secret)] is False
    assert seen[str(ROOT)] in (False, [".venv"], [])  # at most the virtual environment, never the project
    root_home = seen[os.path.expanduser("~root")]
    assert root_home in (False, [], [".pyenv"])


def test_the_filesystem_is_read_only_except_private_ram_disks():
    seen = report("""
import errno, json, os
result = {}
for path in ['/usr/x', '/opt/traindeep/traindeep/x.py', '/x', '/dev/x', '/tmp/x', '/dev/shm/x', 'x']:
    try:
        with open(path, 'w') as f:
            f.write('a')
        result[path] = 'written'
    except OSError as error:
        result[path] = errno.errorcode[error.errno]
print(json.dumps(result))
""")
    assert seen["/tmp/x"] == seen["/dev/shm/x"] == seen["x"] == "written"
    for path in ("/usr/x", "/opt/traindeep/traindeep/x.py", "/x", "/dev/x"):
        assert seen[path] in ("EROFS", "EACCES", "EPERM"), (path, seen[path])


def test_ram_disks_and_files_are_capped():
    seen = report("""
import errno, json
result = {}
for path in ['/dev/shm/big', '/tmp/big', 'big']:
    written = 0
    try:
        with open(path, 'wb') as f:
            for _ in range(400):
                f.write(b'x' * 2**20)
                written += 1
    except OSError as error:
        result[path] = [written, errno.errorcode[error.errno]]
    else:
        result[path] = [written, 'no error']
print(json.dumps(result))
""", shm_mb=16, disk_mb=32, file_mb=24)
    assert seen["/dev/shm/big"][1] == "ENOSPC" and seen["/dev/shm/big"][0] <= 16
    assert seen["/tmp/big"][1] in ("EFBIG", "ENOSPC") and seen["/tmp/big"][0] <= 32
    assert seen["big"][1] == "EFBIG" and seen["big"][0] <= 24  # the file-size limit comes first


def test_no_terminal_to_push_keystrokes_into():
    seen = report("""
import errno, fcntl, json, os, termios
result = {}
try:
    fd = os.open('/dev/tty', os.O_RDWR)
    fcntl.ioctl(fd, termios.TIOCSTI, b'x')
    result['tty'] = 'pushed'
except OSError as error:
    result['tty'] = errno.errorcode[error.errno]
for fd in (0, 1, 2):
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b'x')
        result[fd] = 'pushed'
    except OSError as error:
        result[fd] = errno.errorcode[error.errno]
print(json.dumps(result))
""")
    assert "pushed" not in seen.values(), seen


def test_memory_is_capped_including_ram_disks():
    done = run("block = bytearray(1500 * 2**20)\nprint('survived')", memory_gb=0.5)
    assert done.killed == "memory" and b"survived" not in done.stdout
    if sandbox.mode() == "root" and sandbox._cgroup_roots():
        done = run("""
with open('/dev/shm/fill', 'wb') as f:
    for _ in range(1200):
        f.write(b'x' * 2**20)
print('survived')""", memory_gb=0.5, shm_mb=2048)
        assert done.killed == "memory" and b"survived" not in done.stdout


@pytest.mark.skipif(sandbox.mode() != "root", reason="process limits need root (a uid or cgroup of the run's own)")
def test_processes_are_capped():
    seen = report("""
import json, os, time
children, error = 0, None
for _ in range(500):
    try:
        pid = os.fork()
    except OSError as e:
        error = type(e).__name__
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children += 1
print(json.dumps({'children': children, 'error': error}))
""", processes=40)
    assert seen["children"] < 40 and seen["error"] == "BlockingIOError"


def test_nothing_outlives_the_run():
    marker = f"traindeep-test-daemon-{os.getpid()}"
    done = run(f"""
import subprocess, sys
subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(0.1)', {marker!r}],
                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print('started')""")
    assert done.stdout.strip() == b"started"
    time.sleep(0.5)
    survivors = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert survivors == []


def test_time_and_output_limits_stop_a_run():
    start = time.monotonic()
    assert run("while True: pass", timeout=2).killed in ("time", "wall")  # CPU time, or wall time on a busy machine
    assert time.monotonic() - start < 10
    done = run("import sys\nwhile True: sys.stdout.write('x' * 65536)", output_mb=1)
    assert done.killed == "output" and len(done.stdout) <= 2 * 2**20


def test_stdin_may_arrive_in_chunks():
    def chunks():
        yield b"first\n"
        time.sleep(0.2)
        yield b"second\n"

    done = sandbox.run([sys.executable, "-c", "import sys; print(sys.stdin.read().split())"], chunks(),
                       sandbox.Limits(timeout=30))
    assert done.stdout.strip() == b"['first', 'second']"


def test_without_cgroups_memory_is_watched_from_outside(monkeypatch):
    monkeypatch.setattr(sandbox, "_cgroup_roots", lambda: {})
    done = run("block = bytearray(1500 * 2**20)\nprint('survived')", memory_gb=0.5)
    assert done.killed == "memory" and b"survived" not in done.stdout
    # Forked children share their parent's pages: counted once, they stay under the limit.
    seen = report("""
import json, os, time
data = bytearray(200 * 2**20)
children = []
for _ in range(8):
    pid = os.fork()
    if pid == 0:
        time.sleep(2)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
print(json.dumps({'children': len(children)}))
""", memory_gb=0.6)
    assert seen == {"children": 8}


@pytest.mark.skipif(sandbox.mode() != "root", reason="uids are only leased in root mode")
def test_runs_from_two_processes_never_share_a_uid():
    """Two graders (or two test workers) on one machine: each run leases its own uid, so one run's
    clean-up sweep cannot kill the other's processes."""
    code = "import os, time; time.sleep(3); print(os.getuid())"
    other = subprocess.Popen([sys.executable, "-c", f"""
import sys
from traindeep.course import sandbox
done = sandbox.run([sys.executable, "-c", {code!r}], b"", sandbox.Limits(timeout=60))
print(done.returncode, done.killed, done.stdout.decode().strip())
"""], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    time.sleep(1)  # the other process is inside its run now
    mine = run(code)
    theirs = other.communicate(timeout=60)[0].split()
    assert mine.returncode == 0 and mine.killed is None, mine.stderr[-2000:]
    assert theirs[:2] == ["0", "None"], theirs
    assert int(theirs[2]) != int(mine.stdout) and int(theirs[2]) in sandbox.UID_POOL


# -- second round (issue 21) --------------------------------------------------------------------------------

KEYRING = """
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
KEY_SPEC_USER_KEYRING = ctypes.c_int(-4)
result = {}
for name, number, args in [("add_key", 248, (b"user", b"traindeep-test-key", b"answers", 7, KEY_SPEC_USER_KEYRING)),
                           ("request_key", 249, (b"user", b"traindeep-test-key", None, 0)),
                           ("keyctl", 250, (0, KEY_SPEC_USER_KEYRING, 0))]:  # KEYCTL_GET_KEYRING_ID
    returned = libc.syscall(number, *args)
    result[name] = [returned, ctypes.get_errno() if returned == -1 else 0]
try:
    result["seen"] = "traindeep-test-key" in open("/proc/keys").read()
except OSError:
    result["seen"] = False
print(json.dumps(result))
"""


@pytest.mark.skipif(sandbox._SECCOMP_ARCH is None, reason="the seccomp filter is written for x86-64")
def test_kernel_keyrings_are_no_channel_between_runs():
    first = report(KEYRING)
    assert first["add_key"] == [-1, 1] and first["request_key"] == [-1, 1] and first["keyctl"] == [-1, 1], first
    second = report(KEYRING)
    assert second["seen"] is False
    assert "traindeep-test-key" not in Path("/proc/keys").read_text()  # nothing left after the runs


@pytest.mark.skipif(sandbox._SECCOMP_ARCH is None, reason="the seccomp filter is written for x86-64")
def test_namespaces_mounts_and_tracing_are_refused_but_threads_and_children_work():
    seen = report("""
import ctypes, json, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
result = {}
for name, number, args in [("unshare", 272, (0x10000000,)), ("ptrace", 101, (16, 1, 0, 0)),
                           ("mount", 165, (b"none", b"/tmp", b"tmpfs", 0, None)), ("bpf", 321, (0, None, 0))]:
    returned = libc.syscall(number, *args)
    result[name] = ctypes.get_errno() if returned == -1 else 0
thread = threading.Thread(target=lambda: None)
thread.start()
thread.join()
result["child"] = subprocess.run(["/bin/echo", "ok"], capture_output=True, text=True).stdout.strip()
print(json.dumps(result))
""")
    assert seen == {"unshare": 1, "ptrace": 1, "mount": 1, "bpf": 1, "child": "ok"}


@pytest.mark.skipif(not {"cpu", "cpuacct"} <= set(sandbox._cgroup_roots()), reason="needs the cpu cgroups (root)")
def test_a_run_gets_one_core_and_its_time_limit_counts_cpu_time():
    busy = "import os\nfor _ in range(4):\n    if os.fork() == 0:\n        break\nwhile True:\n    pass"
    done = run(busy, timeout=3)
    # Stopped at 3 s of CPU time, or at 6 s of wall time when the machine is too busy to give it that.
    assert done.killed in ("time", "wall") and (done.killed == "wall" or 3 <= done.cpu_seconds < 4), done
    assert done.cpu_seconds <= 1.1 * done.seconds + 0.2, "five busy processes share one core"
    start = time.monotonic()
    assert run("import time\ntime.sleep(60)", timeout=2).killed == "wall"  # waiting: stopped at twice the limit
    assert time.monotonic() - start < 15


@pytest.mark.skipif(sandbox.mode() != "root", reason="uids are only leased in root mode")
def test_the_uid_lock_folder_must_be_roots_own(tmp_path, monkeypatch):
    folder = tmp_path / "locks"
    folder.mkdir()
    folder.chmod(0o777)
    os.chown(folder, 65534, 65534)  # made first by another account
    monkeypatch.setattr(sandbox, "UID_LOCKS", folder)
    with pytest.raises(sandbox.SandboxUnavailable, match="must be root's, mode 700"):
        run("print(1)")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(elsewhere)
    monkeypatch.setattr(sandbox, "UID_LOCKS", tmp_path / "link")
    with pytest.raises(sandbox.SandboxUnavailable, match="cannot be opened safely"):
        run("print(1)")
    assert list(elsewhere.iterdir()) == [], "nothing is created through the link"


@pytest.mark.skipif(sandbox.mode() != "root", reason="uids are only leased in root mode")
def test_no_free_uid_says_so(tmp_path, monkeypatch):
    import fcntl

    monkeypatch.setattr(sandbox, "UID_LOCKS", tmp_path / "locks")
    monkeypatch.setattr(sandbox, "UID_POOL", range(sandbox.UID_POOL.start + 900, sandbox.UID_POOL.start + 901))
    (tmp_path / "locks").mkdir(mode=0o700)
    held = os.open(tmp_path / "locks" / str(sandbox.UID_POOL.start), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(sandbox.SandboxUnavailable, match="no free uid"):
            run("print(1)")
    finally:
        os.close(held)
    assert run("print(1)").stdout.strip() == b"1"
