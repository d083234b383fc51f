"""Runs a command on a new pseudo-terminal, as a person at a terminal would, and follows
a script of steps given as JSON in argv[1]:
  ["expect", REGEX]      wait (up to 20 s) until the screen so far matches REGEX
  ["send", TEXT]         type TEXT (\\u0003 is Ctrl-C, \\u001a is Ctrl-Z)
  ["resize", ROWS, COLS] resize the terminal (the kernel sends SIGWINCH)
  ["sleep", SECONDS]
Then waits for the command to exit, keeps reading the terminal for 1 s more (anything a
box writes after its session ended would show up there), and prints the transcript as
JSON: {"screen": ..., "after_exit": ..., "status": N, "failed": STEP or null}."""
import fcntl
import json
import os
import pty
import re
import select
import struct
import sys
import termios
import time

steps = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
screen = b""
failed = None


def pump(timeout):
    global screen
    r, _, _ = select.select([fd], [], [], timeout)
    if fd in r:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return False
        if not data:
            return False
        screen += data
    return True


for step in steps:
    if step[0] == "expect":
        deadline = time.time() + 20
        pat = re.compile(step[1].encode())
        while not pat.search(screen) and time.time() < deadline:
            if not pump(0.1):
                break
        if not pat.search(screen):
            failed = step
            break
    elif step[0] == "send":
        try:
            os.write(fd, step[1].encode())
        except OSError:
            pass  # the command has already exited
    elif step[0] == "resize":
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", step[1], step[2], 0, 0))
    elif step[0] == "sleep":
        end = time.time() + step[1]
        while time.time() < end:
            pump(0.05)

status = None
deadline = time.time() + 30
while time.time() < deadline:
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.waitstatus_to_exitcode(st)
        break
    pump(0.1)
if status is None:
    os.kill(pid, 9)
    _, st = os.waitpid(pid, 0)
    status = os.waitstatus_to_exitcode(st)
mark = len(screen)
end = time.time() + 1
while time.time() < end:
    if not pump(0.1):
        break
print(json.dumps({"screen": screen[:mark].decode(errors="replace"), "after_exit": screen[mark:].decode(errors="replace"), "status": status, "failed": failed}))
