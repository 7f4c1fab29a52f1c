"""The harness that stands above the controller and the simulator: whole runs judged against
the simulator's ground truth (demo, tests, benchmarks), the in-memory PLC links and virtual time,
and generated workloads. The floor service never imports it."""
