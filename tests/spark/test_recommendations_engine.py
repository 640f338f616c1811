"""The Spark recommender on tiny data: lists leave out what a customer has, reasons name their item."""

import subprocess
import sys

import pandas as pd
import pytest


def test_importing_the_engine_does_not_load_pyspark():
    code = "import sys, recommendations.engine; print(sorted(m for m in ('pyspark', 'py4j') if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


# Five customers. 0-2 like the films 10, 11 and 12 together; 3 and 4 like 20 and 21.
# Customer 0 has 10 and 11 (11 bought twice as much): 12 is theirs to discover, because of 11.
EVENTS = [
    (0, 10, 1.0),
    (0, 11, 2.0),
    (1, 10, 1.0),
    (1, 11, 1.0),
    (1, 12, 1.0),
    (2, 11, 1.0),
    (2, 12, 1.0),
    (2, 10, 1.0),
    (3, 20, 1.0),
    (3, 21, 1.0),
    (4, 20, 1.0),
    (4, 12, 1.0),
]


@pytest.fixture
def events(spark):
    return spark.createDataFrame(pd.DataFrame(EVENTS, columns=["user", "item", "value"]))


@pytest.mark.spark
def test_item_based_lists_leave_out_what_the_customer_has_and_say_why(spark, events):
    from recommendations.engine import spark as spark_engine

    sims = spark_engine.item_similarities(events, 5)
    scores = spark_engine.item_knn_scores(events, sims)
    lists = spark_engine.top_n(scores, 3, exclude=events).toPandas()
    mine = lists[lists.user == 0].sort_values("rank")
    assert not set(mine.item) & {10, 11}
    assert mine.item.iloc[0] == 12
    # 11 weighs 2 and is as close to 12 as 10 is: "because you bought 11"
    assert mine.reason.iloc[0] == 11
    # every customer's own items stay out of every list
    had = set(map(tuple, pd.DataFrame(EVENTS)[[0, 1]].to_numpy().tolist()))
    assert not had & set(zip(lists.user, lists.item, strict=True))


@pytest.mark.spark
def test_factor_lists_leave_out_seen_items_exactly(spark, events):
    from recommendations.engine import spark as spark_engine

    model = spark_engine.als_fit(events, factors=4, iterations=5, regularization=0.01, alpha=5.0)
    lists = spark_engine.factor_top_n(model.userFactors, model.itemFactors, events, n=5).toPandas()
    had = set(map(tuple, pd.DataFrame(EVENTS)[[0, 1]].to_numpy().tolist()))
    assert not had & set(zip(lists.user, lists.item, strict=True))
    # five items are unseen by customer 0 (12, 20, 21) ... only three exist: the list is those three
    assert sorted(lists[lists.user == 0].item) == [12, 20, 21]
    top = lists[(lists.user == 0) & (lists["rank"] == 1)].iloc[0]
    assert top["item"] == 12 and top["reason"] in (10, 11)
