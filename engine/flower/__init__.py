"""Flower's programs, as fedtui starts and adapts them: the SuperLink (only its Fleet API open to
other hosts), the SuperNode (a short idle poll), the warm worker and its relay, Flower's CLI,
their home folder, and the deployment of one run. Every private name of Flower's that fedtui
touches is in `internals`."""
