"""The configurations a shop starts with: the default (PureSVD, served as before), item-based CF,
user-based CF, RP3beta, and two blends with the weights chosen on validation splits (docs/engine.md):
user-based + item-based (0.8 / 0.2), and PureSVD + RP3beta (0.9 / 0.1), the one at or above the
default on both evaluation datasets. Parameters are left empty: each uses its algorithm's documented
defaults (recommendations/algorithms.py) until an operator changes them."""

from django.db import migrations

PRESETS = [
    ("Default (PureSVD)", "pure_svd", "The product's default model, as served before configurations existed.", True),
    ("Item-based CF", "item_knn", "Items similar to what each customer bought or liked.", False),
    ("User-based CF", "user_knn", "What the most similar customers bought.", False),
    ("RP3beta", "rp3beta", "Random walks between customers and items, with a popularity penalty.", False),
]
BLENDS = [
    ("User-based + item-based CF", "The two neighbourhood methods, side by side.", "user_knn", 0.8, "item_knn", 0.2),
    ("PureSVD + RP3beta", "The default with a touch of graph walk: above it offline.", "pure_svd", 0.9, "rp3beta", 0.1),
]


def create(apps, schema_editor):
    Config = apps.get_model("recommendations", "RecommenderConfig")
    Component = apps.get_model("recommendations", "BlendComponent")
    if Config.objects.exists():
        return
    made = {}
    for name, algorithm, description, is_default in PRESETS:
        made[algorithm] = Config.objects.create(
            name=name, algorithm=algorithm, description=description, is_default=is_default
        )
    for name, description, first, w1, second, w2 in BLENDS:
        blend = Config.objects.create(name=name, algorithm="blend", description=description)
        Component.objects.create(blend=blend, config=made[first], weight=w1)
        Component.objects.create(blend=blend, config=made[second], weight=w2)


def remove(apps, schema_editor):
    apps.get_model("recommendations", "BlendComponent").objects.all().delete()
    apps.get_model("recommendations", "RecommenderConfig").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("recommendations", "0004_recommender_configs")]

    operations = [migrations.RunPython(create, remove)]
