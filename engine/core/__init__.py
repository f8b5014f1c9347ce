"""The facts every layer shares: errors, the config's keys, the event schema, control commands,
run statuses, units, and what the controller hands its processes through the environment."""
