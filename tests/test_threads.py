"""CPU threads fitted to the machine's load when a command starts."""

import torch

from fdae.threads import fit_threads_to_load, threads_for_load


def test_threads_are_the_cores_left_free_and_at_least_one():
    assert threads_for_load(2, 0.1) == 2  # idle
    assert threads_for_load(2, 0.6) == 1  # one core taken
    assert threads_for_load(2, 5.0) == 1  # oversubscribed: one thread, never zero
    assert threads_for_load(16, 3.4) == 13
    assert threads_for_load(4, -1.0) == 4  # never more than the cores


def test_a_thread_count_the_user_chose_is_kept(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr("os.getloadavg", lambda: (99.0, 99.0, 99.0))
    try:
        assert fit_threads_to_load({"OMP_NUM_THREADS": "2"}) is None
        assert torch.get_num_threads() == before
        note = fit_threads_to_load({})
        assert torch.get_num_threads() == 1
        assert (note is None) == (before == 1)
        if note:
            assert "busy" in note and "OMP_NUM_THREADS" in note
    finally:
        torch.set_num_threads(before)
