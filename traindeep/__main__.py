"""Command line: python -m traindeep notebooks|labs|grade|slides|bench ..."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m traindeep",
                                     description="Tools of the Training Deep Networks course book.")
    commands = parser.add_subparsers(dest="command", required=True)

    nbs = commands.add_parser("notebooks", help="stamp notebooks with their Colab badge and setup cell, "
                                                "or write the Colab copies the badges open")
    nbs.add_argument("action", choices=["stamp", "check", "colab", "executed"],
                     help="executed: fail naming every book notebook without a successful execution record")
    nbs.add_argument("--touch", action="store_true",
                     help="with `executed`: mark those notebooks changed so the next build executes them again")
    nbs.add_argument("--out", default="_build/colab", help="where `colab` writes the copies")

    labs = commands.add_parser("labs", help="generate labs/ from solutions/, check they are in sync, or vet "
                                            "that every declared grade holds on every draw")
    labs.add_argument("action", choices=["build", "check", "vet"])
    labs.add_argument("lab", nargs="*", help="vet: the solutions/NAME.ipynb to vet")
    labs.add_argument("--draws", type=int, default=50, help="vet: grader seeds per lab (default 50)")
    labs.add_argument("--seed", type=int, default=0, help="vet: draw d uses grader seed SEED+d (default 0)")
    labs.add_argument("--workers", type=int, default=1, help="vet: variants graded at once")
    labs.add_argument("--out", help="vet: also write the tables to this markdown file")
    labs.add_argument("--pack", action="store_true",
                      help="vet: grade variants that touch different questions in one run (faster, for tests)")
    labs.add_argument("--cell-timeout", type=float, help="vet: seconds per cell (default: the lab's own limit)")
    labs.add_argument("--no-sandbox", action="store_true", help="vet: run without isolation (your own labs only)")

    grade = commands.add_parser("grade", help="batch-grade submitted notebooks")
    grade.add_argument("solution", help="the instructor's solutions/NAME.ipynb")
    grade.add_argument("submissions", nargs="+", help="notebook files or folders of them")
    grade.add_argument("--out", required=True, help="folder for grades.csv and feedback/")
    grade.add_argument("--workers", type=int, default=1)
    grade.add_argument("--timeout", type=float, default=600.0, help="seconds per submission")
    grade.add_argument("--cell-timeout", type=float,
                       help="seconds per cell (default: the lab's traindeep.cell_timeout, else 120)")
    grade.add_argument("--memory-gb", type=float, default=4.0, help="memory limit per submission")
    grade.add_argument("--seed", type=int, help="seed for the probes' inputs (default: random)")
    grade.add_argument("--max-mb", type=float, default=20.0, help="largest submission file read, in MB")
    grade.add_argument("--judge-timeout", type=float,
                       help="seconds the judge may spend on one probe's value (default: twice the cell limit)")
    grade.add_argument("--release-details", action="store_true",
                       help="show hidden probes' drawn inputs and expected values in the feedback (after the deadline)")
    grade.add_argument("--only", metavar="NAME",
                       help="regrade the one student NAME into the existing --out folder (logged in regrade.log)")
    grade.add_argument("--no-sandbox", action="store_true",
                       help="run student code WITHOUT isolation (unsafe: only for your own test notebooks)")
    grade.add_argument("--roster", help="an LMS roster export (CSV) to match submissions to students")
    grade.add_argument("--lms", choices=["canvas", "moodle"], help="also write the LMS's grade import CSV "
                                                                   "(needs --roster)")
    grade.add_argument("--assignment", help="the assignment's column name in the LMS (default: the lab's name)")
    grade.add_argument("--similarity", action="store_true",
                       help="also write the similarity report of the answers to OUT/similarity/")

    gs = commands.add_parser("gradescope", help="write a Gradescope autograder zip for one lab")
    gs.add_argument("solution", help="the instructor's solutions/NAME.ipynb")
    gs.add_argument("--out", default="autograder.zip")

    sim = commands.add_parser("similarity", help="rank pairs of submissions by answer similarity (read, never run)")
    sim.add_argument("solution", help="the instructor's solutions/NAME.ipynb")
    sim.add_argument("submissions", nargs="+", help="notebook files or folders of them")
    sim.add_argument("--out", required=True, help="folder for index.html and similarity.csv")
    sim.add_argument("--threshold", type=float, default=0.6, help="flag pairs at or above this similarity (0-1)")

    verify = commands.add_parser("verify", help="run notebooks under other seed offsets and thread counts; "
                                                "list every failing claim (make verify)")
    verify.add_argument("notebooks", nargs="*", help="notebooks (default: book/, lectures/, solutions/)")
    verify.add_argument("--offsets", default="1,2", help="seed offsets, e.g. 1,2 (TRAINDEEP_SEED_OFFSET)")
    verify.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2")
    verify.add_argument("--cell-timeout", type=float, default=600.0, help="seconds per cell (a hang guard)")
    verify.add_argument("--out", default="_build/verify.md")

    slides = commands.add_parser("slides", help="export lectures/ to offline reveal.js HTML")
    slides.add_argument("--out", default="_build/slides")

    bench = commands.add_parser("bench", help="measure notebook times, widget latency, loop overhead")
    bench.add_argument("--out", default="_build/bench.md")
    bench.add_argument("--skip-notebooks", action="store_true")
    bench.add_argument("--ci", action="store_true",
                       help="also time the whole CI run (.ci/run) on a fresh clone of this checkout (~10-20 min)")
    bench.add_argument("--build", action="store_true",
                       help="also time make book on fresh clones at THREADS=1 and 2, quiet and beside two busy "
                            "processes (four builds, 30-60 min)")
    bench.add_argument("--build-limit", type=float, default=3.0, metavar="FACTOR",
                       help="stop a busy build once it takes FACTOR times its quiet build (default 3; the target is 2)")

    args = parser.parse_args(argv)
    try:
        return _run(args)
    except ModuleNotFoundError as error:
        if error.name in COURSE_MODULES:
            print(f"error: `python -m traindeep {args.command}` needs the course tools ({error.name} is missing): "
                  'pip install "traindeep[course]"', file=sys.stderr)
            return 2
        raise


COURSE_MODULES = {"nbformat", "nbclient", "ipykernel", "psutil", "yaml", "jupyter_client", "copydetect"}


def _run(args) -> int:
    if args.command == "notebooks" and args.action == "colab":
        from .course.colab import COLAB_BRANCH, MarkupError, write_copies

        try:
            written = write_copies(args.out)
        except MarkupError as error:
            print(f"cannot write the Colab copies: {error}", file=sys.stderr)
            return 1
        print(f"wrote {len(written)} Colab copies to {args.out} (publish them on the branch {COLAB_BRANCH!r})")
        return 0
    if args.command == "notebooks" and args.action == "executed":
        from .course.executed import pending

        missing = pending(touch=args.touch)
        if args.touch:
            if missing:
                print(f"executing again (no successful record): {', '.join(missing)}")
            return 0
        for name in missing:
            print(f"{name}: its execution failed or timed out (no successful record in the cache); "
                  "see the build log above, fix it, and run `make book` again", file=sys.stderr)
        return 1 if missing else 0
    if args.command == "notebooks":
        from .course.notebooks import badge_problems, stamp_all

        stale = stamp_all(check_only=args.action == "check")
        if args.action == "stamp":
            print(f"stamped {len(stale)} notebook(s)" + (": " + ", ".join(stale) if stale else ""))
            return 0
        from .course.lint import source_problems

        problems = [f"{p}: stale badge or setup cell (run `python -m traindeep notebooks stamp`)"
                    for p in stale] + badge_problems() + source_problems()
        for problem in problems:
            print(problem, file=sys.stderr)
        print("notebook stamps are current" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    if args.command == "labs" and args.action == "vet":
        from .course.labformat import LabFormatError
        from .course.vet import vet

        if not args.lab or args.draws < 1:
            print("error: labs vet needs at least one solutions/NAME.ipynb and --draws of 1 or more", file=sys.stderr)
            return 2
        try:
            passed = vet(args.lab, args.draws, args.seed, args.workers, args.out, sandbox=not args.no_sandbox,
                         pack=args.pack, cell_timeout=args.cell_timeout)
        except (LabFormatError, RuntimeError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0 if passed else 1
    if args.command == "labs":
        from .course.labs import build_labs, stale_labs

        if args.lab:
            print(f"error: labs {args.action} takes no notebooks", file=sys.stderr)
            return 2
        if args.action == "build":
            written = build_labs()
            print(f"wrote {len(written)} lab(s) to labs/")
            return 0
        stale = stale_labs()
        for name in stale:
            print(f"{name} is stale: run `python -m traindeep labs build`", file=sys.stderr)
        print("labs/ is in sync with solutions/" if not stale else f"{len(stale)} stale lab(s)")
        return 1 if stale else 0
    if args.command == "grade":
        from .course.grade import grade_batch
        from .course.labformat import LabFormatError
        from .course.notebooks import NotebookError

        if bool(args.lms) != bool(args.roster):
            print("error: --lms needs --roster, and --roster needs --lms (canvas or moodle)", file=sys.stderr)
            return 2

        try:
            result = grade_batch(args.solution, args.submissions, args.out, workers=args.workers,
                                 timeout=args.timeout, cell_timeout=args.cell_timeout, memory_gb=args.memory_gb,
                                 seed=args.seed, sandbox=not args.no_sandbox, max_mb=args.max_mb,
                                 judge_timeout=args.judge_timeout, release_details=args.release_details,
                                 only=args.only)
        except (LabFormatError, NotebookError, RuntimeError) as error:  # the instructor's side is wrong
            print(f"error: {error}", file=sys.stderr)
            return 2
        return _after_grading(args) or (0 if result else 1)
    if args.command == "gradescope":
        from .course.gradescope import AutograderError, build
        from .course.labformat import LabFormatError

        try:
            print(f"wrote {build(args.solution, args.out)}: upload it as the assignment's autograder")
        except (AutograderError, LabFormatError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    if args.command == "similarity":
        from .course.labformat import LabFormatError
        from .course.similarity import write_report

        try:
            write_report(args.solution, args.submissions, args.out, threshold=args.threshold)
        except (LabFormatError, ValueError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    if args.command == "verify":
        from pathlib import Path

        from .course.verify import default_notebooks, parse_list, report, verify

        try:
            offsets, threads = parse_list(args.offsets, "--offsets"), parse_list(args.threads, "--threads")
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        notebooks = [Path(p) for p in args.notebooks] or default_notebooks()
        missing = [str(p) for p in notebooks if not p.is_file()]
        if missing:
            print(f"error: no such notebook: {', '.join(missing)}", file=sys.stderr)
            return 2
        runs = verify(notebooks, offsets, threads, cell_timeout=args.cell_timeout, out=args.out)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report(runs))
        failing = sum(not r.ok for r in runs)
        print(f"wrote {args.out}: {len(runs)} runs, {failing} with failing claims")
        return 1 if failing else 0
    if args.command == "slides":
        from .course.slides import export_slides

        for path in export_slides(args.out):
            print(f"wrote {path}")
        return 0
    if args.command == "bench":
        from .course.bench import run_bench

        print(run_bench(args.out, notebooks=not args.skip_notebooks, ci=args.ci, build=args.build,
                        build_limit=args.build_limit))
        return 0
    return 2


def _after_grading(args) -> int:
    """grade's --roster/--lms and --similarity, on the folder grade_batch wrote; 2 when they cannot run."""
    from pathlib import Path

    from .course.gradebook import RosterError, write_gradebook
    from .course.similarity import write_report

    try:
        if args.lms:
            write_gradebook(args.out, args.roster, args.lms, args.assignment or Path(args.solution).stem)
        if args.similarity:
            write_report(args.solution, args.submissions, Path(args.out) / "similarity")
    except (RosterError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
