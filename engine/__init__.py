"""fedtui's engine: runs Flower, owns the run folder, and knows nothing of any UI.

Its packages are layers; each imports only from the layers below it (`.importlinter` states the
order and CI checks it):

    run      a run's lifecycle: the controller, its supervisor thread, resume, sweeps, followers
    flower   Flower's programs, as fedtui starts and adapts them (SuperLink, SuperNode, workers)
    app      the Flower app fedtui submits: the ServerApp (its round loop in app.server) and the
             ClientApp, split as Flower's examples split them
    ml       model, data, training and evaluation, early stopping: no Flower
    system | net | record   this machine's processes and GPUs | channels between processes and
             hosts | the run folder and what it records (independent of each other)
    core     errors, config, events, commands, statuses, units: the facts every layer shares
"""
