"""A trivial step: read {"n": N} on stdin, print {"n": N + 1}."""

import json
import sys

print(json.dumps({"n": json.load(sys.stdin)["n"] + 1}))
