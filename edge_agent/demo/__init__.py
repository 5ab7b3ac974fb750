"""What only `edge-agent demo` and the tests need: sample media and a local broker."""
