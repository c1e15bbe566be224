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
    assert run("while True: pass", timeout=2).killed == "time"
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
