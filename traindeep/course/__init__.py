"""What authors and lecturers run, never imported by learners' notebooks.

The lab format and `labs/` generation, the sandbox and the grader, Colab
stamps, slides and the bench. `python -m traindeep ...` dispatches here.
"""
