"""Flower's programs, as fedtui starts and adapts them: the SuperLink (only its Fleet API open to
other users and hosts), the SuperNode (a short idle poll, its API only its user's), the warm
worker (only fedtui's ClientApp) and its relay, Flower's CLI, their home folder, and the
deployment of one run. Every private name of Flower's that fedtui
touches is in `internals`."""
