"""Errors that name the file, the problem and the fix."""


class FrameProblem(Exception):
    """One input file cannot be used as it is.

    ``problem`` says what is wrong, ``fix`` what the observer can do; the
    inventory turns these into an "excluded" row of the frame table, so the
    rest of the night goes on.
    """

    def __init__(self, path, problem, fix):
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}. Fix: {fix}")

    @property
    def reason(self):
        return f"{self.problem}. Fix: {self.fix}"


class CalibrationMissing(Exception):
    """Nothing usable to calibrate a frame: the run cannot go on as asked."""

    def __init__(self, night, frame, missing, fix):
        self.night = night
        self.frame = str(frame)
        self.missing = missing
        self.fix = fix
        super().__init__(f"night {night}, frame {self.frame}: {missing}. Fix: {fix}")


class ConfigProblem(Exception):
    """The configuration cannot work with the data it points at."""
