"""`fedtui join` tells the person at the client host why the server turned it away, from what
Flower's SuperNode logged (the e2e in tests/e2e/test_multihost.py meets the first two live)."""

from pathlib import Path

import pytest

from engine.net.federation import parse_address
from engine.run.client_host import JoinSettings, why_supernode_ended, why_worker_ended

TLS = JoinSettings(parse_address("10.0.0.5:9092"), 0, ca=Path("ca.pem"), key=Path("k"), wait_s=30)
PLAIN = JoinSettings(parse_address("10.0.0.5:9092"), 0, ca=None, key=None, wait_s=15)


@pytest.mark.parametrize(
    "settings, logged, says",
    [
        (TLS, "ERROR: Exit Code: 305\n[code: 2004] Failed to activate SuperNode.\n"
              "INFO: Finished server process [7]\n",
         "the server refused this client's key: it is not in the server's authorized_keys"),
        (PLAIN, "WARNING: Connection attempt failed, retrying\n"
                "Giving up reconnection after 15.01 seconds and 7 tries.\n",
         "no answer from 10.0.0.5:9092 within 15 s (a server with TLS does not answer --insecure)"),
        (TLS, "Giving up reconnection after 30.2 seconds and 9 tries.\n",
         "no answer from 10.0.0.5:9092 within 30 s"),
        (TLS, "SSL/TLS handshake error detected.\n[SSL: CERTIFICATE_VERIFY_FAILED] unable to get "
              "local issuer certificate\n",
         "the server's TLS certificate does not verify against --ca"),
        (PLAIN, "[code: 2001] SuperNode authentication is enabled. All SuperNodes must be "
                "registered via the CLI.\n",
         "the server requires a client key: --key"),
        (TLS, "INFO: starting\nERROR: something new went wrong\nINFO: Finished server process\n",
         "flower-supernode exited: ERROR: something new went wrong"),
        (TLS, "", "flower-supernode exited: no output"),
    ],
)  # fmt: skip
def test_why_the_supernode_gave_up_in_words_the_joining_person_can_act_on(settings, logged, says):
    assert why_supernode_ended(logged, settings) == says


@pytest.mark.parametrize(
    "logged, returncode, says",
    [
        ("Traceback (most recent call last):\n  File \"worker.py\", line 9, in <module>\n"
         "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n\n", 1,
         "the worker exited (1): torch.OutOfMemoryError: CUDA out of memory. "
         "Tried to allocate 2.00 GiB"),
        ("", -9, "the worker exited (-9): no output"),
    ],
)  # fmt: skip
def test_a_dying_worker_is_told_with_its_last_words_since_its_log_goes_with_the_host(
    logged, returncode, says
):
    assert why_worker_ended(logged, returncode) == says
