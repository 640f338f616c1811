"""The configurations a shop starts with: the default (PureSVD, served as before), item-based CF,
user-based CF, and the two blended. Parameters are left empty: each uses its algorithm's documented
defaults (recommendations/algorithms.py) until an operator changes them."""

from django.db import migrations

PRESETS = [
    ("Default (PureSVD)", "pure_svd", "The product's default model, as served before configurations existed.", True),
    ("Item-based CF", "item_knn", "Items similar to what each customer bought or liked.", False),
    ("User-based CF", "user_knn", "What the most similar customers bought.", False),
]
BLEND = ("User-based + item-based CF", "Both neighbourhood methods side by side, weighted equally.")


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
    blend = Config.objects.create(name=BLEND[0], algorithm="blend", description=BLEND[1])
    Component.objects.create(blend=blend, config=made["user_knn"], weight=1.0)
    Component.objects.create(blend=blend, config=made["item_knn"], weight=1.0)


def remove(apps, schema_editor):
    apps.get_model("recommendations", "BlendComponent").objects.all().delete()
    apps.get_model("recommendations", "RecommenderConfig").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("recommendations", "0004_recommender_configs")]

    operations = [migrations.RunPython(create, remove)]
