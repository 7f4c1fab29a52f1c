"""The `sortctl` command line: one entry point above every package (controller, simulator,
harness, benchmarks); each subcommand's module is imported only when chosen."""
