"""What a failed reconcile step means, in one table: what the user is told and when kumo retries.

Every failure of a reconcile pass lands here as (step, error). The step names what kumo was doing
(connecting to the provider, observing, creating, ...), as crossplane-runtime's managed reconciler
does, so the event reason and the message say which step failed without anyone reading the log
(https://github.com/crossplane/crossplane-runtime/blob/master/pkg/reconciler/managed/reconciler.go).
The error's class says how fixable it is, which sets the retry pace:

- a throttle, a 5xx or a refusal nobody foresaw: exponential backoff, it may pass by itself;
- a missing ProviderConfig or credentials Secret: a quick, short backoff (2 s doubling to 30 s),
  because the usual fix is the user applying it, often moments after the object that needs it;
- an uninstalled or broken provider plugin, a Terminal cloud error, an invalid spec, a resource
  owned by someone else: a slow pace, since only a person changes anything (a spec edit is an
  event of its own and is reconciled at once);
- Kubernetes losing a race (404/409 while the pass ran): quietly at once, with the new state;
- a namespace being deleted: not at all; the object's own deletion is the next event.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from kumo.controller.core.kubeapi import Conflict, KubeError, NamespaceTerminating, NotFound
from kumo.controller.core.providerconfig import ProviderConfigError
from kumo.controller.core.resources import InvalidSpec
from kumo.providers.base import NotReady, ProviderError, Terminal, Unavailable

from kumo import api


class OwnershipConflict(Terminal):
    """The cloud resource exists under our external name but belongs to someone else."""


class Step(enum.Enum):
    """A step of a reconcile pass, as named in a failure's event reason and message."""

    CONNECT = (api.EVENT_CANNOT_CONNECT, "cannot connect to provider")
    VALIDATE = (api.EVENT_INVALID_SPEC, "invalid spec")
    ADD_FINALIZER = (api.EVENT_CANNOT_ADD_FINALIZER, "cannot add finalizer")
    OBSERVE = (api.EVENT_CANNOT_OBSERVE, "cannot observe external resource")
    CREATE = (api.EVENT_CANNOT_CREATE, "cannot create external resource")
    UPDATE = (api.EVENT_CANNOT_UPDATE, "cannot update external resource")
    DELETE = (api.EVENT_CANNOT_DELETE, "cannot delete external resource")
    PUBLISH = (api.EVENT_CANNOT_PUBLISH, "cannot publish connection details")
    SET_PASSWORD = (api.EVENT_CANNOT_SET_PASSWORD, "cannot set master password")
    UNPUBLISH = (api.EVENT_CANNOT_UNPUBLISH, "cannot unpublish connection details")
    REMOVE_FINALIZER = (api.EVENT_CANNOT_REMOVE_FINALIZER, "cannot remove finalizer")
    # Judging who owns what the cloud holds under our name (a refusal has its own reason).
    CLAIM = (api.EVENT_OWNED_BY_ANOTHER, "cannot manage external resource")
    # Outside every step above: a bug in the reconciler itself.
    RECONCILE = (api.EVENT_RECONCILE_ERROR, "cannot reconcile")

    @property
    def event_reason(self) -> str:
        return self.value[0]

    @property
    def failure(self) -> str:
        """How a message about this step's failure begins."""
        return self.value[1]


class StepFailed(Exception):
    """An error raised inside a step, labelled with the step (raised by `at`)."""

    def __init__(self, step: Step, cause: Exception) -> None:
        super().__init__(f"{step.failure}: {cause}")
        self.step = step
        self.cause = cause


class at:
    """Label any error raised in the block with `step`. `Retryable` progress (`NotReady`) and
    errors already labelled by an inner step pass through unchanged."""

    def __init__(self, step: Step) -> None:
        self.step = step

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> None:
        if error is None or not isinstance(error, Exception) or isinstance(error, NotReady | StepFailed):
            return
        raise StepFailed(self.step, error) from error


class Pace(enum.Enum):
    """How soon a failed object is tried again, by how fixable its error is."""

    NONE = "none"  # not at all: the next event brings it back
    AT_ONCE = "at once"  # a lost race: the queue's backoff, which starts at a second
    BACKOFF = "backoff"  # may pass by itself: exponential backoff
    SOON = "soon"  # fixed by the user applying something: a short backoff
    SLOW = "slow"  # only a person's change helps: every few minutes


@dataclass(frozen=True)
class RetryPace:
    """`first` seconds after the first failure, doubling with each consecutive one up to `cap`,
    times a random factor in `spread` so objects that failed together do not retry together."""

    first: float
    cap: float
    spread: tuple[float, float] = (0.5, 1.0)

    def delay(self, failures: int) -> float:
        step = min(self.cap, self.first * 2 ** max(0, failures - 1))
        return step * random.uniform(*self.spread)  # noqa: S311 - jitter, not cryptography


@dataclass(frozen=True)
class Timing:
    """How soon to look again; all in seconds."""

    poll_min: float = 2.0  # first look at a resource that is still provisioning
    poll_max: float = 30.0
    terminal_retry: float = 300.0  # errors a retry soon won't fix
    backoff_first: float = 1.0  # errors that may pass by themselves
    backoff_cap: float = 300.0
    config_retry_first: float = 2.0  # a ProviderConfig or credentials Secret not applied yet
    config_retry_cap: float = 30.0

    def retry(self, pace: Pace) -> RetryPace | None:
        return {
            Pace.NONE: None,
            Pace.AT_ONCE: RetryPace(self.backoff_first, self.backoff_cap),
            Pace.BACKOFF: RetryPace(self.backoff_first, self.backoff_cap),
            Pace.SOON: RetryPace(self.config_retry_first, self.config_retry_cap),
            Pace.SLOW: RetryPace(self.terminal_retry, self.terminal_retry, (0.8, 1.2)),
        }[pace]


@dataclass(frozen=True)
class Rule:
    """One row of the table. `condition_reason` None: nothing is shown (a quiet retry, logged at
    info); `event_reason` None: the failing step's own reason."""

    errors: type[Exception] | tuple[type[Exception], ...]
    condition_reason: str | None
    event_reason: str | None
    pace: Pace
    why: str


# First match wins, so the narrower classes come first.
RULES: tuple[Rule, ...] = (
    Rule(NamespaceTerminating, None, None, Pace.NONE, "the namespace is being deleted, and this object with it"),
    Rule((NotFound, Conflict), None, None, Pace.AT_ONCE, "deleted or written by someone else meanwhile"),
    Rule(OwnershipConflict, api.OWNED_BY_ANOTHER, api.EVENT_OWNED_BY_ANOTHER, Pace.SLOW, "someone else's resource"),
    Rule(InvalidSpec, api.INVALID_SPEC, api.EVENT_INVALID_SPEC, Pace.SLOW, "only a spec edit helps"),
    Rule(ProviderConfigError, api.RECONCILE_ERROR, None, Pace.SOON, "the user applies the config or Secret"),
    Rule(Unavailable, api.RECONCILE_ERROR, None, Pace.SLOW, "an operator installs or fixes the plugin"),
    Rule(Terminal, api.RECONCILE_ERROR, None, Pace.SLOW, "bad input, denied access, quota: a person acts"),
    Rule(Exception, api.RECONCILE_ERROR, None, Pace.BACKOFF, "throttling, 5xx, a refusal nobody foresaw"),
)


@dataclass(frozen=True)
class Disposition:
    """What to do about one failure."""

    step: Step
    error: Exception
    condition_reason: str | None  # Synced=False with this reason; None: say nothing (quiet)
    event_reason: str
    message: str  # the failing step, then the error's own message
    pace: Pace
    retry: RetryPace | None  # None: no retry until the next event

    @property
    def quiet(self) -> bool:
        return self.condition_reason is None

    @property
    def terminal(self) -> bool:
        """Retried only at the slow pace (the metrics' `terminal` label)."""
        return self.pace is Pace.SLOW


def dispose(step: Step, error: Exception, timing: Timing) -> Disposition:
    """The disposition of `error`, raised while the reconciler was at `step`."""
    rule = next(rule for rule in RULES if isinstance(error, rule.errors))
    return Disposition(
        step=step,
        error=error,
        condition_reason=rule.condition_reason,
        event_reason=rule.event_reason or step.event_reason,
        message=f"{step.failure}: {describe(error)}",
        pace=rule.pace,
        retry=timing.retry(rule.pace),
    )


def describe(error: Exception) -> str:
    """An error's message for users: a provider's, a config's or the API server's own text; for
    anything else (a bug) its class too, since its text alone rarely says what happened."""
    if isinstance(error, ProviderError | ProviderConfigError | KubeError):
        return str(error)
    return f"unexpected error: {type(error).__name__}: {error}"
