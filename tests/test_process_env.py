import dataclasses

from engine.core import process_env
from engine.core.config import RunConfig


def test_the_server_app_reads_back_the_run_folder_and_resume_state_it_was_given(
    tmp_path, monkeypatch
):
    state = {"round": 2, "best_round": 1, "best_eval_loss": 2.5, "rounds_without_improvement": 1}
    for name, value in process_env.for_server_app(tmp_path, state).items():
        monkeypatch.setenv(name, value)

    assert process_env.run_dir() == tmp_path.resolve()
    assert process_env.resume_state() == state


def test_a_new_run_has_no_resume_state(tmp_path, monkeypatch):
    monkeypatch.delenv(process_env.RESUME_ENV, raising=False)

    assert process_env.RESUME_ENV not in process_env.for_server_app(tmp_path, None)
    assert process_env.resume_state() is None


def test_a_process_not_started_by_fedtui_has_no_run_folder(monkeypatch):
    monkeypatch.delenv(process_env.RUN_DIR_ENV, raising=False)

    assert process_env.run_dir() is None


def test_clients_share_the_cores_unless_threads_are_configured(monkeypatch):
    monkeypatch.setattr(process_env.os, "cpu_count", lambda: 8)

    def threads(**settings) -> int:
        return process_env.threads_per_client(dataclasses.replace(RunConfig(), **settings))

    assert threads(num_clients=3) == 2
    assert threads(num_clients=16) == 1
    assert threads(num_clients=3, threads_per_client=4) == 4
    # only the sampled clients train at once
    assert threads(num_clients=16, clients_per_round=2) == 4
    # a virtual client of the simulation runtime trains on the cores Ray gives it
    assert threads(num_clients=16, backend="simulation", client_cpus=2) == 2
