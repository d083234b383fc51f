"""Runs a command on a new pseudo-terminal (as a person's terminal session would), answers
"s" (allow for this session) when agentbox's consent prompt appears, relays what the
terminal showed to stdout, and ends with the command's own exit status."""
import os
import pty
import select
import sys
import time

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
shown, answered, deadline = b"", False, time.time() + 40
while time.time() < deadline:
    ready, _, _ = select.select([fd], [], [], 0.2)
    if fd not in ready:
        continue
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    shown += data
    if not answered and b"[d]eny" in shown:
        os.write(fd, b"s\n")
        answered = True
_, status = os.waitpid(pid, 0)
sys.stdout.write(shown.decode(errors="replace"))
raise SystemExit(os.waitstatus_to_exitcode(status))
