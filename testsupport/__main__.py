"""For the shell tools: `python3 -m testsupport free-port` prints a free loopback port;
`python3 -m testsupport engine-answers SOCKET` exits 0 if an engine API answers on the socket."""

import sys

from testsupport import engine_answers, free_port

usage = "usage: python3 -m testsupport free-port | engine-answers SOCKET"
args = sys.argv[1:]
if args == ["free-port"]:
    print(free_port())
elif len(args) == 2 and args[0] == "engine-answers":
    sys.exit(0 if engine_answers(args[1]) else 1)
else:
    sys.exit(usage)
