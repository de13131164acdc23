"""``python -m archcalc``: the same as the ``archcalc`` command."""

from archcalc.cli import main

main()
