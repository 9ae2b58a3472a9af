"""The display: what a person is shown about a run, as data and renderables; the commands draw it.

progress.py is the state of a provision run built from the runner's events (fed on the main thread,
drawn live by commands/provision.py); failures.py says why a run failed, per host; report.py is the
verify report (parsed from the pytest run) with its text, rich and HTML views; hints.py turns a known
cause -- of a failed task or of a failed check -- into a hint a person can act on. Nothing here runs
anything or prints.
"""
