"""A fork bomb that counts: Python source that forks until the kernel refuses, then prints
`fork failed after N <reason>` (or `forked 5000`) and kills what it forked."""

FORK_BOMB = """
import os, signal, time
children = []
try:
    while len(children) < 5000:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
    print("forked", len(children))
except OSError as exc:
    print("fork failed after", len(children), exc.strerror, flush=True)
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
"""
