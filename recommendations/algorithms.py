"""The algorithms a recommender configuration can use, their parameters, and how to build each.

A configuration (models.RecommenderConfig) names an algorithm and the parameters that differ from
its defaults; `validate` checks them against the algorithm's declared parameters (type, range,
choices) and names the parameter at fault; `build` turns a checked configuration into an engine
estimator (recommendations.engine: pure numpy/scipy). The console's form, the pipeline and the
API read this one table, so an algorithm offered is one the pipeline can run.

No Django here: a configuration reaches `build` as plain data (`Spec`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .engine import (
    DEFAULT_PARAMS,
    ITEM_RANKER_PARAMS,
    RP3BETA_PARAMS,
    SASREC_PARAMS,
    USER_RANKER_PARAMS,
    Blend,
    ItemKNN,
    Popularity,
    PureSVD,
    RP3beta,
    SASRec,
    UserKNNRanker,
)


@dataclass(frozen=True)
class Parameter:
    """One parameter of an algorithm, as an operator sets it."""

    name: str
    type: type
    default: object
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    label: str = ""

    @property
    def verbose(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def clean(self, value):
        """The value as the estimator takes it; ValueError with an operator's sentence if it is not one."""
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in {"true", "false"}:
                return value.lower() == "true"
            raise ValueError("must be true or false")
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError("must be a whole number")
            try:
                number = float(value)
            except ValueError:
                raise ValueError("must be a whole number") from None
            if not number.is_integer():
                raise ValueError("must be a whole number")
            value = int(number)
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError("must be a number")
            try:
                value = float(value)
            except ValueError:
                raise ValueError("must be a number") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError("must be a finite number")
        else:
            value = str(value)
            if self.choices and value not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}")
            return value
        if self.min is not None and value < self.min:
            raise ValueError(f"must be at least {self.min:g}")
        if self.max is not None and value > self.max:
            raise ValueError(f"must be at most {self.max:g}")
        return value


@dataclass(frozen=True)
class Algorithm:
    key: str
    label: str
    description: str
    parameters: tuple[Parameter, ...]
    make: Callable[..., object]
    # A blend has no parameters of its own: it weighs other configurations (its components).
    is_blend: bool = False
    defaults_from: Mapping[str, object] = field(default_factory=dict)
    # Checks across parameters (every parameter, defaults filled in) -> {parameter: what is wrong}.
    check: Callable[[Mapping[str, object]], dict[str, str]] | None = None

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.parameters}


@dataclass(frozen=True)
class Spec:
    """A configuration as plain data: what `build` needs."""

    algorithm: str
    params: Mapping[str, object] = field(default_factory=dict)
    components: tuple[tuple[Spec, float], ...] = ()
    name: str = ""


class InvalidParameters(ValueError):
    """Parameters an algorithm does not accept: `errors` maps each parameter's name to what is wrong."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


_PURE_SVD = (
    Parameter("factors", int, DEFAULT_PARAMS["factors"], "Latent factors kept (more: finer taste, slower).", 1, 1000),
    Parameter(
        "beta", float, DEFAULT_PARAMS["beta"], "Popularity correction: 0 favours best-sellers, 1 the long tail.", 0, 1
    ),
    Parameter(
        "value_transform",
        str,
        DEFAULT_PARAMS["value_transform"],
        "How interaction strength is scaled before fitting.",
        choices=("log1p", "none", "binary"),
    ),
    Parameter("n_iter", int, 5, "Power iterations of the randomised SVD.", 1, 50, label="Iterations"),
    Parameter("random_state", int, 0, "Seed (the same seed gives the same suggestions).", 0, 2**31 - 1),
)
_ITEM_KNN = (
    Parameter("k", int, ITEM_RANKER_PARAMS["k"], "Neighbours kept per item.", 1, 5000, label="Neighbours (k)"),
    Parameter(
        "similarity",
        str,
        ITEM_RANKER_PARAMS["similarity"],
        "How two items' customers are compared.",
        choices=("cosine", "adjusted_cosine"),
    ),
    Parameter(
        "shrinkage", float, ITEM_RANKER_PARAMS["shrinkage"], "Damps similarities supported by few customers.", 0, 10000
    ),
    Parameter(
        "value_transform",
        str,
        ITEM_RANKER_PARAMS["value_transform"],
        "How interaction strength is scaled.",
        choices=("log1p", "none"),
    ),
    Parameter("binary", bool, False, "Count each interaction as 1 whatever its strength."),
)
_USER_KNN = (
    Parameter("k", int, USER_RANKER_PARAMS["k"], "Most similar customers consulted.", 1, 5000, label="Neighbours (k)"),
    Parameter(
        "similarity",
        str,
        USER_RANKER_PARAMS["similarity"],
        "How two customers' tastes are compared.",
        choices=("pearson", "cosine"),
    ),
    Parameter(
        "shrinkage",
        float,
        USER_RANKER_PARAMS["shrinkage"],
        "Damps neighbours who share few items with the customer.",
        0,
        10000,
    ),
    Parameter("exponent", float, USER_RANKER_PARAMS["exponent"], "Above 1 favours the closest neighbours.", 0.1, 10),
    Parameter(
        "beta",
        float,
        USER_RANKER_PARAMS["beta"],
        "Popularity penalty on the votes: 0 none, 1 strong.",
        0,
        1,
        label="Popularity penalty",
    ),
    Parameter(
        "value_transform",
        str,
        USER_RANKER_PARAMS["value_transform"],
        "How interaction strength is scaled.",
        choices=("log1p", "binary", "none"),
    ),
)
_BLEND = (
    Parameter(
        "normalisation",
        str,
        "minmax",
        "How each configuration's scores are put on one scale per customer before weighing.",
        choices=("minmax", "zscore", "rank"),
    ),
)
_RP3BETA = (
    Parameter("alpha", float, RP3BETA_PARAMS["alpha"], "Exponent on transition probabilities.", 0, 5),
    Parameter("beta", float, RP3BETA_PARAMS["beta"], "Popularity penalty: 0 none, 1 strong.", 0, 1),
    Parameter("k", int, RP3BETA_PARAMS["k"], "Neighbours kept per item.", 1, 5000, label="Neighbours (k)"),
    Parameter("binary", bool, RP3BETA_PARAMS["binary"], "Count each interaction as 1 whatever its strength."),
    Parameter(
        "value_transform",
        str,
        RP3BETA_PARAMS["value_transform"],
        "How interaction strength is scaled.",
        choices=("log1p", "none"),
    ),
)
_POPULARITY = (
    Parameter(
        "weighting",
        str,
        "users",
        "What makes an item popular: how many customers, or how much interaction.",
        choices=("users", "values"),
    ),
)
_SASREC = (
    Parameter(
        "max_len",
        int,
        SASREC_PARAMS["max_len"],
        "Most recent items of each customer the model reads.",
        1,
        1000,
        label="History length",
    ),
    Parameter("factors", int, SASREC_PARAMS["factors"], "Size of the item embeddings and hidden states.", 4, 512),
    Parameter("blocks", int, SASREC_PARAMS["blocks"], "Self-attention blocks stacked.", 1, 8),
    Parameter("heads", int, SASREC_PARAMS["heads"], "Attention heads per block (must divide the factors).", 1, 8),
    Parameter("dropout", float, SASREC_PARAMS["dropout"], "Share of units dropped while training.", 0, 0.9),
    Parameter("epochs", int, SASREC_PARAMS["epochs"], "Passes over the histories (more: slower fit).", 1, 1000),
    Parameter("batch_size", int, SASREC_PARAMS["batch_size"], "Histories per training step.", 8, 4096),
    Parameter(
        "learning_rate", float, SASREC_PARAMS["learning_rate"], "Adam's step size.", 0.00001, 1, label="Learning rate"
    ),
    Parameter(
        "n_negatives",
        int,
        SASREC_PARAMS["n_negatives"],
        "Random items the right next item is told apart from.",
        1,
        100000,
        label="Negatives per batch",
    ),
    Parameter(
        "max_updates",
        int,
        SASREC_PARAMS["max_updates"],
        "Most training steps of a fit: a large shop trains fewer epochs (its most recent histories first),"
        " so the fit's time stays bounded as the shop grows.",
        1,
        1_000_000,
        label="Most training steps",
    ),
    Parameter("random_state", int, 0, "Seed (the same seed gives the same suggestions).", 0, 2**31 - 1),
)


def _sasrec_check(params: Mapping[str, object]) -> dict[str, str]:
    if params["factors"] % params["heads"]:
        return {"heads": f"Heads must divide the factors ({params['factors']}): each head gets an equal share"}
    return {}


ALGORITHMS: dict[str, Algorithm] = {
    a.key: a
    for a in (
        Algorithm(
            "pure_svd",
            "PureSVD (the default model)",
            "Matrix factorisation of decayed interactions; the best order-blind ranker on the shop's data.",
            _PURE_SVD,
            PureSVD,
        ),
        Algorithm(
            "item_knn",
            "Item-based collaborative filtering",
            "Suggests items similar to what the customer bought or liked (cosine over items' customers).",
            _ITEM_KNN,
            ItemKNN,
        ),
        Algorithm(
            "user_knn",
            "User-based collaborative filtering",
            "Suggests what the most similar customers bought: their votes, weighted by how alike they are"
            " (the seed's mean-centred formula stays the rating predictor).",
            _USER_KNN,
            UserKNNRanker,
        ),
        Algorithm(
            "rp3beta",
            "RP3beta (graph walk)",
            "Random walks customer → item → customer → item, with a popularity penalty.",
            _RP3BETA,
            RP3beta,
        ),
        Algorithm(
            "sasrec",
            "Sequence model (SASRec)",
            "Self-attention over each customer's latest items in the order they came: suggests what tends to"
            " come next (trained with TensorFlow; slower to fit than the others).",
            _SASREC,
            SASRec,
            check=_sasrec_check,
        ),
        Algorithm("popularity", "Popularity", "The shop's best-sellers for everyone.", _POPULARITY, Popularity),
        Algorithm(
            "blend",
            "Blend of configurations",
            "A weighted sum of other configurations' normalised scores (e.g. user-based + item-based).",
            _BLEND,
            Blend,
            is_blend=True,
        ),
    )
}


def algorithm(key: str) -> Algorithm:
    try:
        return ALGORITHMS[key]
    except KeyError:
        raise InvalidParameters({"algorithm": f"unknown algorithm {key!r}; one of {', '.join(ALGORITHMS)}"}) from None


def validate(key: str, params: Mapping[str, object] | None) -> dict:
    """The parameters checked and typed; raises InvalidParameters naming each bad or unknown one."""
    algo = algorithm(key)
    params = dict(params or {})
    if not isinstance(params, dict):
        raise InvalidParameters({"params": "must be an object of parameter names and values"})
    errors, cleaned = {}, {}
    for name, value in params.items():
        try:
            spec = algo.parameter(name)
        except KeyError:
            known = ", ".join(p.name for p in algo.parameters) or "none"
            errors[name] = f"{algo.label} has no parameter {name!r} (its parameters: {known})"
            continue
        try:
            cleaned[name] = spec.clean(value)
        except ValueError as exc:
            errors[name] = f"{spec.verbose} {exc}"
    if not errors and algo.check is not None:
        errors = algo.check({**algo.defaults(), **cleaned})
    if errors:
        raise InvalidParameters(errors)
    return cleaned


def effective(key: str, params: Mapping[str, object] | None) -> dict:
    """Every parameter of the algorithm: its default unless the configuration sets it."""
    return {**algorithm(key).defaults(), **validate(key, params)}


def build(spec: Spec, *, n_threads: int | None = None):
    """An unfitted engine estimator for a configuration (a blend: its components', weighted)."""
    algo = algorithm(spec.algorithm)
    if algo.is_blend:
        if len(spec.components) < 2:
            raise InvalidParameters({"components": "a blend needs at least two configurations"})
        if any(algorithm(part.algorithm).is_blend for part, _ in spec.components):
            raise InvalidParameters({"components": "a blend weighs plain configurations, not other blends"})
        return Blend(
            [build(part, n_threads=n_threads) for part, _ in spec.components],
            weights=[float(w) for _, w in spec.components],
            n_threads=n_threads,
            **effective(spec.algorithm, spec.params),
        )
    return algo.make(**effective(spec.algorithm, spec.params), n_threads=n_threads)
