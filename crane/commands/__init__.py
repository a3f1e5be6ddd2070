"""Subcommands of `crane`; one module per pipeline area, each exposing `register(subparsers)`."""
