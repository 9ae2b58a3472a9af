"""`labctl verify`: the testinfra suites of tests/infra run against a lab, and what they decide with.

run.py plans the layers (which can run, from cheap probes of the lab's state), runs the suites in one
pytest subprocess and builds the report (labctl/display/report.py); plugin.py is the pytest plugin
loaded into that run (`-p labctl.verify.plugin`). k8s_checks.py, addon_checks.py and workloads.py
hold the suites' decisions and manifests as plain functions, unit-tested without a cluster.
"""
