"""A run's lifecycle: the controller (record, steering, first and last events), its supervisor
thread, clients started again when they die, resume, sweeps, runs followed from another
process, and this host's client of a run served elsewhere (`fedtui join`)."""
