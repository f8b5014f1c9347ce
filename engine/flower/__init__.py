"""The Flower app, split as Flower's examples split it: server_app (its round loop in
federated_run), client_app, task."""
