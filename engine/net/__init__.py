"""Channels between processes and hosts: the apps' event channel, the run's control socket, and
the certificates and keys of a federation across hosts."""
