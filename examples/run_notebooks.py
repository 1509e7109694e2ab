"""Execute the example notebooks in full mode and store their outputs (what users browse).

    python examples/run_notebooks.py                 # every notebook in examples/
    python examples/run_notebooks.py quickstart      # one of them

Each notebook runs top to bottom in a fresh Jupyter kernel (nbclient), with its working
directory in examples/ and BAYES_LARQ_FAST unset. The outputs are written back into the
notebook, with the wall time and date of the run in the notebook's metadata
(`bayes_larq.full_run`) and in its first cell, on the line that starts with "**Stored
outputs.**". Tests run the notebooks in fast mode on a copy and never rewrite them.
"""

import argparse
import datetime
import os
import pathlib
import platform
import time

import nbformat
from nbclient import NotebookClient

EXAMPLES = pathlib.Path(__file__).parent
STORED_MARK = "**Stored outputs.**"


def stored_line(seconds, when):
    return (f"{STORED_MARK} The outputs below come from a full run (not the fast mode) on "
            f"{when}: {seconds / 60:.1f} minutes of wall time on {os.cpu_count()} CPU cores "
            f"({platform.machine()}), no GPU.")


def run(path):
    notebook = nbformat.read(path, as_version=4)
    os.environ.pop("BAYES_LARQ_FAST", None)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # TensorFlow's C++ start-up lines, not output
    start = time.perf_counter()
    NotebookClient(notebook, timeout=3600, kernel_name="python3",
                   resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    seconds = time.perf_counter() - start
    when = datetime.date.today().isoformat()
    notebook.metadata["bayes_larq"] = {"full_run": {"seconds": round(seconds, 1), "date": when}}
    first = notebook.cells[0]
    lines = [line for line in first.source.splitlines() if not line.startswith(STORED_MARK)]
    first.source = "\n".join(lines).rstrip() + "\n\n" + stored_line(seconds, when)
    nbformat.write(notebook, path)
    print(f"{path.name}: {seconds:.0f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook names without .ipynb [all]")
    args = parser.parse_args(argv)
    paths = ([EXAMPLES / f"{name}.ipynb" for name in args.names] if args.names
             else sorted(EXAMPLES.glob("*.ipynb")))
    for path in paths:
        run(path)


if __name__ == "__main__":
    main()
