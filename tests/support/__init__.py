"""Test helpers shared by minipaas's tests: free ports, polling, a private real sshd.

Owns: nothing of minipaas itself; these modules only start and stop test infrastructure.
Must not touch: the system configuration, or processes the tests did not start.
"""
