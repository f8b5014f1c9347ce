"""The Flower app, split as Flower's examples split it: server_app, client_app, task."""
