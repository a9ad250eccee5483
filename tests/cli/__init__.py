"""Tests of the command line (reconciler/cli/): commands, help, conventions, start-up cost, a real process."""
