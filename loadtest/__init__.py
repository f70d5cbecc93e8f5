"""Load tests and benchmarks of llama-gateway (issue 8).

``python -m loadtest overhead|routing|overload|all [--smoke] [--out DIR]`` runs the scenarios
in ``loadtest/scenarios/`` and writes ``<scenario>.json``, ``<scenario>.md``, PNG plots and a
joined ``report.md`` into ``loadtest/results/`` (or ``--out``). ``--smoke`` runs each in
seconds, for the test suite. ``loadtest/locustfile.py`` is for users of Locust.
"""
