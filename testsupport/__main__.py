"""For the shell tools: `python3 -m testsupport free-port` prints a free loopback port;
`python3 -m testsupport engine-answers SOCKET` exits 0 if an engine API answers on the socket;
`python3 -m testsupport engine-has-image SOCKET IMAGE` exits 0 if that engine holds the image."""

import sys

from testsupport import engine_answers, engine_has_image, free_port

usage = "usage: python3 -m testsupport free-port | engine-answers SOCKET | engine-has-image SOCKET IMAGE"
args = sys.argv[1:]
if args == ["free-port"]:
    print(free_port())
elif len(args) == 2 and args[0] == "engine-answers":
    sys.exit(0 if engine_answers(args[1]) else 1)
elif len(args) == 3 and args[0] == "engine-has-image":
    sys.exit(0 if engine_has_image(args[1], args[2]) else 1)
else:
    sys.exit(usage)
