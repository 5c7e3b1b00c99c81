"""Applies README's "Adding a pool" step 1 to the pools.yaml of a repository copy (argv[1]).

tests/e2e/run.sh then runs step 2 (`make pools`) and 3 (`make up`) in that copy.
"""

import pathlib
import re
import sys
import textwrap

root = pathlib.Path(sys.argv[1])
section = (root / "README.md").read_text().split("### Adding a pool", 1)[1]
entry = textwrap.dedent(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
pools = root / "pools.yaml"
pools.write_text(pools.read_text() + "\n" + textwrap.indent(entry, "  "))
print(f"added to {pools}:\n{entry}")
