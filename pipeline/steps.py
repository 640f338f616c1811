"""
The step interface, and the steps listed in settings.

A step is a `Step` object that its own app declares in its `steps.py` (`profiles.steps.profiles`,
`segments.steps.segments`, ...). The pipeline runs the steps that `settings.PIPELINE_STEPS` lists,
in the order listed, as Django runs MIDDLEWARE: the list is the one place where the recomputation
is put together, and this app never imports the apps whose steps it runs.

A step declares:
- `name` and `description` (the admin's start form and `recompute --help` show them);
- `params`: the parameters it accepts, each with its type and default. `recompute` turns them
  into command-line options, the admin's start form shows those marked `admin=True`, and
  `pipeline_start` hands each step only the values of the parameters it declares, so the pipeline
  knows no step's parameters;
- `backends`: what computes it, per compute backend: "local" (numpy and the database, in the
  worker), which every step has, and "spark" (Apache Spark, docs/spark.md) for the heavy steps
  that have a Spark implementation. `settings.PIPELINE_BACKEND` names the one in use; a step
  without an implementation for it runs locally, and each step records the backend that computed
  it (`PipelineStep.backend`);
- `abandon`, optionally: called with the PipelineStep of a run found abandoned (its worker died
  mid-step), so the app can mark what the step had started (e.g. a recommender run) as failed.

An implementation is called as `implementation(step=..., progress=..., **params)` and returns the
counts it wants recorded on the step (a `_status` key of "skipped" records the step as skipped);
it raises to fail.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

#: The compute backends a step may name (settings.PIPELINE_BACKEND is one of them).
BACKENDS = ("local", "spark")

#: The types a parameter may have: what a command line, a form and a JSON task message all carry.
PARAM_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class Param:
    """One parameter a step accepts."""

    name: str
    type: type = str
    default: object = None
    help: str = ""
    # Offered on the admin's "Start a recomputation" form (a checkbox for a bool).
    admin: bool = False
    # For a str parameter that takes one of a list of values known at run time (e.g. the names of
    # recommender configurations): a callable returning (value, label) pairs. The form offers them
    # as a list, and a value not among them is refused when the run is started.
    choices: Callable[[], Sequence[tuple[str, str]]] | None = None

    def __post_init__(self):
        if self.type not in PARAM_TYPES:
            raise TypeError(f"parameter {self.name}: type {self.type!r} is not one of {PARAM_TYPES}")

    def clean(self, value):
        """`value` as this parameter's type; ValueError when it is not one."""
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise ValueError(f"{self.name} must be of type {self.type.__name__}, not {value!r}")
        if self.choices is not None and value != self.default:
            allowed = [v for v, _ in self.choices()]
            if value not in allowed:
                raise ValueError(
                    f"{self.name} must be one of {', '.join(map(repr, allowed)) or 'nothing yet'}, not {value!r}"
                )
        return value


@dataclass(frozen=True)
class Step:
    """A recomputation step, declared by its app and listed in settings.PIPELINE_STEPS."""

    name: str
    description: str
    backends: Mapping[str, Callable[..., dict]]
    params: tuple[Param, ...] = ()
    abandon: Callable[..., object] | None = None
    _by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_by_name", {p.name: p for p in self.params})
        unknown = set(self.backends) - set(BACKENDS)
        if unknown or "local" not in self.backends:
            raise ImproperlyConfigured(
                f"step {self.name}: backends must include 'local' and be among {BACKENDS}, got {sorted(self.backends)}"
            )

    def backend_for(self, backend: str | None = None) -> str:
        """The backend that computes this step when `backend` (default: settings.PIPELINE_BACKEND)
        is in use: that one where the step has it, else "local"."""
        backend = backend or settings.PIPELINE_BACKEND
        return backend if backend in self.backends else "local"

    def implementation(self, backend: str | None = None) -> Callable[..., dict]:
        return self.backends[self.backend_for(backend)]

    def run(self, *, step, progress, backend: str | None = None, **params) -> dict:
        """Compute the step on `backend` (default: the one in use); returns the counts to record."""
        return self.implementation(backend)(step=step, progress=progress, **params)

    def param(self, name: str) -> Param | None:
        return self._by_name.get(name)


@functools.cache
def _listed() -> dict[str, Step]:
    steps: dict[str, Step] = {}
    for path in settings.PIPELINE_STEPS:
        step = import_string(path)
        if not isinstance(step, Step):
            raise ImproperlyConfigured(f"PIPELINE_STEPS: {path} is not a pipeline.steps.Step")
        if step.name in steps:
            raise ImproperlyConfigured(f"PIPELINE_STEPS: two steps are named {step.name!r}")
        steps[step.name] = step
    params: dict[str, Param] = {}
    for step in steps.values():
        for p in step.params:
            if params.setdefault(p.name, p).type is not p.type:
                raise ImproperlyConfigured(f"PIPELINE_STEPS: parameter {p.name!r} has two types in two steps")
    return steps


@receiver(setting_changed)
def _forget_listed(*, setting, **kwargs):
    if setting == "PIPELINE_STEPS":
        _listed.cache_clear()


def listed_steps() -> list[Step]:
    """The steps of settings.PIPELINE_STEPS, in order."""
    return list(_listed().values())


def step_named(name: str) -> Step | None:
    return _listed().get(name)


def available_steps() -> list[str]:
    return list(_listed())


def ordered(steps: list[str]) -> list[str]:
    """`steps` without repeats, in pipeline order; ValueError naming any step not listed."""
    listed = _listed()
    unknown = [s for s in steps if s not in listed]
    if unknown:
        raise ValueError(f"unknown step(s): {', '.join(unknown)} (available: {', '.join(listed)})")
    order = {name: i for i, name in enumerate(listed)}
    return sorted(dict.fromkeys(steps), key=order.__getitem__)


def declared_params() -> list[tuple[Step, Param]]:
    """Every parameter of the listed steps with the step declaring it, in pipeline order."""
    return [(step, p) for step in _listed().values() for p in step.params]


def step_params(*, steps: list[str], options: Mapping[str, object]) -> dict[str, dict]:
    """Per-step parameters from `options` (values by parameter name): each step of `steps` gets
    the values of the parameters it declares. ValueError for an option no listed step declares, or
    a value of the wrong type."""
    declared = {p.name for _, p in declared_params()}
    unknown = sorted(set(options) - declared)
    if unknown:
        raise ValueError(f"no step takes the parameter(s) {', '.join(unknown)}")
    out: dict[str, dict] = {}
    for name in steps:
        step = _listed()[name]
        given = {p.name: p.clean(options[p.name]) for p in step.params if p.name in options}
        if given:
            out[name] = given
    return out


def check_listed_steps(app_configs=None, **kwargs) -> list:
    """System check (`manage.py check`): every path in PIPELINE_STEPS imports and is a Step."""
    from django.core.checks import Error

    try:
        _listed()
    except (ImportError, ImproperlyConfigured) as exc:
        return [Error(str(exc), id="pipeline.E001")]
    return []


def check_backend(app_configs=None, **kwargs) -> list:
    """System check (`manage.py check`): the backend in use can run here (PIPELINE_BACKEND=spark needs
    PostgreSQL, Java, PySpark and the JDBC driver). A warning: runs started anyway fail with the same words."""
    from django.core.checks import Warning

    if settings.PIPELINE_BACKEND != "spark":
        return []
    from common.spark import backend_problem

    problem = backend_problem()
    return [Warning(problem, id="pipeline.W002")] if problem else []


def backend_problem(names: list[str]) -> str | None:
    """Why the steps `names` cannot run on the backend in use, in words; None when they can (or when
    none of them has an implementation for it, so they run locally)."""
    if settings.PIPELINE_BACKEND == "local":
        return None
    if not any(settings.PIPELINE_BACKEND in (step_named(n).backends if step_named(n) else {}) for n in names):
        return None
    from common.spark import backend_problem as spark_problem

    return spark_problem()
