"""The test suites, a package: helpers import as ``tests.<suite>.<module>``.

pytest puts the checkout root on ``sys.path``; worker subprocesses get it
through ``PYTHONPATH``.
"""
