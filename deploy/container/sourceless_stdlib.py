"""Turn the image's standard library into bytecode only (~9 MB less): each module compiled to a `.pyc`
beside it (loaded without its source, as the dependencies are), then its source and `__pycache__`
removed. A file that does not compile keeps its source. Tracebacks through the standard library then
show no source lines, as for the dependencies; dockyard keeps its sources.

Run by deploy/Dockerfile with the image's own Python, so the bytecode matches it."""

import shutil
import sys
from pathlib import Path
from py_compile import PyCompileError, compile

root = Path(sys.argv[1])
for source in sorted(root.rglob("*.py")):
    try:
        compile(str(source), cfile=f"{source}c", doraise=True)
    except PyCompileError:
        continue
    source.unlink()
for cache in sorted(root.rglob("__pycache__"), reverse=True):
    shutil.rmtree(cache)
