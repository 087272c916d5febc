"""Exit statuses of `composer` (documented in README and `composer --help`)."""

OK = 0
FAILURE = 1  # the command failed
USAGE = 2  # bad command line
CONFIG = 15  # invalid project configuration
