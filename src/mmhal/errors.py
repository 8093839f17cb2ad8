"""Errors a user can cause. The CLI prints their message as one sentence and exits with code 2."""


class UserError(Exception):
    """A mistake in the user's input (a path, a file, a name, a shape); its message is one sentence."""


class DataError(UserError):
    """A data file that cannot be used as it is."""


class TrainingDiverged(UserError):
    """A network whose training or validation loss became NaN or infinite (``engine.loop.fit``): its weights are of
    no use. ``network`` names it (the teacher, a student job and seed, a tuning trial), ``epoch`` (1-based) is the
    epoch whose loss was not finite, ``what`` says which loss, and ``hint`` which settings most likely caused it;
    the message is one sentence of them. A student's divergence is recorded and the run goes on without it; the
    teacher's stops the run (a UserError: exit code 2)."""

    def __init__(self, network: str, epoch: int, what: str, hint: str):
        self.network, self.epoch, self.what, self.hint = network, int(epoch), what, hint
        super().__init__(f"{network} diverged at epoch {epoch} ({what}): {hint}")

    def __reduce__(self):  # rebuilt from its parts when it crosses a process boundary
        return type(self), (self.network, self.epoch, self.what, self.hint)
