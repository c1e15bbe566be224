"""The per-lab tests vet each lab (`labs vet --draws 2 --pack`): the grades its solution declares in
`metadata.traindeep.mistakes` must hold on two grader draws, and the feedback must name each mistake."""

from pathlib import Path

from traindeep.course.vet import vet_lab

ROOT = Path(__file__).resolve().parent.parent
DRAWS = 2  # `make verify` vets with 50


def vetted(name):
    """The vetting of solutions/NAME.ipynb on grader seeds 0 and 1, variants on different questions packed
    into one run."""
    return vet_lab(ROOT / "solutions" / f"{name}.ipynb", draws=DRAWS, seed=0, workers=2, pack=True,
                   log=lambda *args: None, check_time=False)  # times: `make verify`, on a quiet machine


def assert_vetted(vetting):
    assert vetting.passed, vetting.markdown()


def assert_feedback_names(vetting, variant, words):
    assert words in vetting.feedback[variant], vetting.feedback[variant]
