import pytest
import torch


@pytest.fixture(autouse=True)
def _inference_mode():
    with torch.inference_mode():
        yield
