"""The Flower app fedtui submits (`fab/pyproject.toml`), split as Flower's examples split it:
`server_app` (its round loop and helpers in `server/`) and `client_app`; their task is engine.ml.
Both run inside processes Flower starts; they reach the controller through engine.net.channel."""
