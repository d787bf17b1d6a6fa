"""Errors that name the place, the problem and the fix.

Whatever the observer must act on is said in one form,
``<where>: <problem>. Fix: <fix>`` (``say``), whether it is raised, written
into a frame table's "excluded" column or logged. ``Problem`` keeps the
parts apart, so that a caller may show them apart or move them elsewhere
(a frame's problem drops the place: the table row names the file).
"""


def say(problem, fix, where=None):
    """'<where>: <problem>. Fix: <fix>'; without ``where``, '<problem>. Fix: <fix>'.

    A problem that ends in a question ('... written as UTC?') keeps its
    question mark in place of the full stop.
    """
    stop = "" if problem.endswith(("?", "!", ".")) else "."
    text = f"{problem}{stop} Fix: {fix}"
    return f"{where}: {text}" if where else text


class Problem(ValueError):
    """Something the observer gave (a file, a header, a setting) cannot be
    used as it is; ``problem`` says what is wrong, ``fix`` what to do, and
    ``where`` (optional) names the file, frame or config entry.

    A ValueError, as the plain ValueErrors it replaces were: callers that
    catch bad values go on catching these.
    """

    def __init__(self, problem, fix, where=None):
        self.problem = problem
        self.fix = fix
        self.where = where
        super().__init__(say(problem, fix, where))

    def __reduce__(self):
        # rebuilt from its parts, whatever a subclass's constructor takes
        # (errors cross process boundaries in pickles)
        return (_revive, (type(self), self.args, self.__dict__))


def _revive(cls, args, state):
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class FrameProblem(Problem):
    """One input file cannot be used as it is.

    The inventory turns these into an "excluded" row of the frame table, so
    the rest of the night goes on.
    """

    def __init__(self, path, problem, fix):
        self.path = str(path)
        super().__init__(problem, fix, self.path)


class CalibrationMissing(Problem):
    """Nothing usable to calibrate a frame: the run cannot go on as asked."""

    def __init__(self, night, frame, missing, fix):
        self.night = night
        self.frame = str(frame)
        super().__init__(missing, fix, f"night {night}, frame {self.frame}")


class ConfigProblem(Problem):
    """The configuration cannot work with the data it points at."""


class ConfigProblems(ConfigProblem):
    """Several configuration problems found at once, each said in full (so
    that one run names every typo, not one per run)."""

    def __init__(self, problems):
        self.problems = list(problems)
        first = self.problems[0]
        super().__init__(first.problem, first.fix, first.where)

    def __str__(self):
        return "; ".join(str(problem) for problem in self.problems)
