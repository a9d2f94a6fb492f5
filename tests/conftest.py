"""Test-wide settings: under pytest-xdist each worker gets one torch thread, so two
workers share the two CI cores instead of oversubscribing them."""

import os

import torch


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
