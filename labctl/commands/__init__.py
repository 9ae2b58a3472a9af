"""One module per labctl command: add_parser(subparsers) and a run function."""
