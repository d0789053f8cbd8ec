"""The local machine: runtime adapters, the process supervisor and the scheduler. No UI."""
