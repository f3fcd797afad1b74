"""Where the `limefort` command (setup.cfg's console script) and `python -m limefort` start.

Python's cycle collector is paused while limefort's modules load and what they made is then
frozen (`gc.freeze`): module-level objects (classes, functions, tables, compiled patterns)
live as long as the process, so no collection needs to walk them again, neither during the
pass nor in the collections Python runs at exit. That is about a sixth of the CPU of an idle
pass, the pass a bureau runs a thousand times every five minutes (docs/performance.md);
objects made afterwards are collected as usual, in a daemon too.
"""

import gc


def run() -> None:
    gc.disable()
    try:
        from limefort.cli import main
    finally:
        gc.freeze()
        gc.enable()
    main()


if __name__ == "__main__":
    run()
