#!/usr/bin/python3
"""Non-root mounting for a server that cannot receive an fd (Node without an addon).

    fusermount-exec.py <mnt> <fusermount -o options> <cmd> [args...]

Runs setuid `fusermount -o <options> -- <mnt>` with _FUSE_COMMFD set to one end
of a socketpair (the libfuse protocol), receives the /dev/fuse fd it sends
(SCM_RIGHTS), makes it inheritable and execs <cmd> with RAWFUSE_FD=<fd>:
the server inherits the mounted connection. Unmount: `fusermount -u <mnt>`.
"""
import os, socket, subprocess, sys

mnt, opts, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
env = dict(os.environ, _FUSE_COMMFD=str(theirs.fileno()))
rc = subprocess.call(['fusermount', '-o', opts, '--', mnt], env=env, pass_fds=[theirs.fileno()])
theirs.close()
if rc != 0:
    sys.exit(f'fusermount failed ({rc})')
_, fds, _, _ = socket.recv_fds(ours, 1, 1)
ours.close()
if not fds:
    sys.exit('fusermount sent no fd')
os.set_inheritable(fds[0], True)
os.execvpe(cmd[0], cmd, dict(os.environ, RAWFUSE_FD=str(fds[0])))
