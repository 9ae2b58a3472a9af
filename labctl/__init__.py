"""labctl: a Kubernetes lab described once in lab.yml, brought up and proven with one command."""

__version__ = "0.1.0"
