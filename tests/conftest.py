import matplotlib
import pytest
import torch

matplotlib.use("Agg")
# One intra-op thread per test process: pytest-xdist runs two of them (plus kernels) on two cores,
# and oversubscribed OpenMP threads make every torch call slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")
