"""A deterministic demo shop: customers, a catalogue and months of behaviour events.

Pure numpy/pandas, no Django. ``generate_shop`` plants a handful of *personas*
(loyal big spenders, bargain hunters, new visitors, lapsed customers, community
enthusiasts) whose behaviour differs in ways the profile and segmentation steps
are expected to recover: purchase rhythm (how many orders, how recent), spend and
price band, category tastes, community activity and signup date.

Events are produced lazily by ``DemoShop.iter_events()`` in DataFrame chunks, one
block of customers at a time, fully vectorised inside a block, so a 1,000,000
customer / 20,000,000 event shop can be streamed in bounded memory.

Determinism: every random draw comes from ``numpy.random.default_rng`` seeded by
``seed`` (and, for events, by ``(seed, block number)``), so the same arguments give
identical frames, identifiers included. Block boundaries depend on ``chunk_size``,
so the *events* (not their total) change when ``chunk_size`` changes.

Event count: the total is exactly ``n_events``. Each customer is given an exact
event budget up front (largest-remainder allocation of ``n_events`` over persona
activity weights); order sessions are generated first, trimmed session by session
to fit the budget, and the rest of the budget is filled with community, activity
and browsing events.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

__all__ = ["CATEGORIES", "EVENT_TYPES", "PERSONAS", "DemoShop", "Persona", "generate_shop"]

DAY = 86_400.0

EVENT_TYPES = (
    "view",
    "click",
    "add_to_cart",
    "purchase",
    "rating",
    "favorite",
    "like",
    "comment",
    "post",
    "share",
    "search",
    "return",
)

# name, lognormal median price, sigma, product nouns
CATEGORIES: tuple[tuple[str, float, float, tuple[str, ...]], ...] = (
    (
        "Electronics",
        180.0,
        0.7,
        ("Wireless headphones", "Smartwatch", "Bluetooth speaker", "4K monitor", "Tablet", "Action camera"),
    ),
    (
        "Home & Kitchen",
        45.0,
        0.6,
        ("Chef's knife", "Espresso maker", "Cast iron pan", "Linen duvet cover", "Blender", "Table lamp"),
    ),
    ("Fashion", 40.0, 0.5, ("Denim jacket", "Linen shirt", "Leather belt", "Wool scarf", "Sneakers", "Summer dress")),
    ("Beauty", 22.0, 0.5, ("Face serum", "Lip balm", "Hair oil", "Night cream", "Sunscreen", "Perfume sample set")),
    (
        "Sports & Outdoors",
        60.0,
        0.6,
        ("Trail running shoes", "Yoga mat", "Hiking backpack", "Cycling gloves", "Tent", "Water bottle"),
    ),
    (
        "Books",
        14.0,
        0.4,
        ("Crime novel", "Cookbook", "Travel guide", "Graphic novel", "Poetry collection", "Biography"),
    ),
    (
        "Toys & Games",
        25.0,
        0.5,
        ("Board game", "Puzzle 1000 pieces", "Building blocks", "Plush bear", "Card game", "Kite"),
    ),
    ("Grocery", 8.0, 0.5, ("Olive oil", "Ground coffee", "Green tea", "Dark chocolate", "Pasta", "Granola")),
    ("Garden", 35.0, 0.6, ("Pruning shears", "Seed kit", "Watering can", "Planter", "Garden hose", "Bird feeder")),
    ("Pet Supplies", 20.0, 0.5, ("Dog leash", "Cat tree", "Pet bed", "Chew toy", "Grooming brush", "Food bowl")),
    (
        "Health & Wellness",
        25.0,
        0.5,
        ("Vitamin D", "Massage ball", "Resistance bands", "Herbal tea", "Foam roller", "Sleep mask"),
    ),
    (
        "Jewelry & Watches",
        120.0,
        0.7,
        ("Silver ring", "Gold necklace", "Chronograph watch", "Pearl earrings", "Bracelet", "Cufflinks"),
    ),
)

ACTIVITY_TITLES = (
    "Yoga in the park",
    "Cooking class: fresh pasta",
    "Trail run meetup",
    "Gadget repair café",
    "Book club evening",
    "Garden planting day",
    "Board game night",
    "Skincare workshop",
    "Dog walking group",
    "Wine and cheese tasting",
    "Photography walk",
    "Mindfulness session",
)
POST_TEMPLATES = (
    "My review of",
    "Tips for choosing",
    "Unboxing:",
    "How I use my",
    "Question about",
    "Best deals on",
    "Care guide for",
    "Showing off my new",
)

FIRST_NAMES = (
    "Emma",
    "Liam",
    "Olivia",
    "Noah",
    "Ava",
    "Lucas",
    "Mia",
    "Leon",
    "Sofia",
    "Mateo",
    "Hannah",
    "Elias",
    "Chloe",
    "Hugo",
    "Yuki",
    "Ravi",
    "Amara",
    "Jonas",
    "Ines",
    "Kenji",
    "Lena",
    "Omar",
    "Zoe",
    "Felix",
    "Nora",
    "Arjun",
    "Clara",
    "Diego",
    "Maya",
    "Tom",
    "Aisha",
    "Paul",
)
LAST_NAMES = (
    "Smith",
    "Müller",
    "Dubois",
    "García",
    "Rossi",
    "Jansen",
    "Nowak",
    "Tanaka",
    "Kim",
    "Patel",
    "Johnson",
    "Schmidt",
    "Martin",
    "López",
    "Bianchi",
    "de Vries",
    "Kowalski",
    "Sato",
    "Silva",
    "Brown",
    "Fischer",
    "Bernard",
    "Moreau",
    "Fernández",
    "Ricci",
    "Bakker",
    "Nguyen",
    "Chen",
)
TIME_ZONES = (
    ("Europe/London", 0.20),
    ("Europe/Berlin", 0.15),
    ("Europe/Paris", 0.10),
    ("Europe/Madrid", 0.07),
    ("Europe/Amsterdam", 0.05),
    ("Europe/Warsaw", 0.03),
    ("America/New_York", 0.14),
    ("America/Chicago", 0.06),
    ("America/Los_Angeles", 0.08),
    ("America/Sao_Paulo", 0.02),
    ("Asia/Tokyo", 0.04),
    ("Asia/Singapore", 0.03),
    ("Australia/Sydney", 0.03),
)
CHANNELS = np.array(["web", "app", "email"], dtype=object)
DEVICES = np.array(["mobile", "desktop", "tablet"], dtype=object)


@dataclass(frozen=True)
class Persona:
    """A planted kind of customer and the behaviour that tells it apart.

    Rates are per customer over the whole generated period (``months``).
    """

    name: str
    label: str
    share: float  # fraction of customers
    activity: float  # relative event budget (multiplied by a lognormal(0, 0.35) draw)
    orders_base: int  # orders = orders_base + Poisson(orders_mean) ...
    orders_mean: float
    buy_probability: float  # ... if a Bernoulli(buy_probability) draw says the customer buys at all
    price_alpha: float  # item choice ∝ (price / category median) ** price_alpha
    categories: tuple[str, ...]  # preferred categories (6x the weight of the others)
    quantity_max: int  # purchase quantity uniform in 1..quantity_max (skewed to 1)
    community_share: float  # fraction of the non-order budget spent on community posts
    activity_share: float  # fraction of the rest spent on marketing activities
    return_rate: float  # fraction of purchases returned
    signup_days: tuple[float, float]  # signup between this many days ago (min, max)
    active_until_days: tuple[float, float]  # last activity between this many days ago (0 = up to now)
    consent_email: float
    consent_push: float
    description: str = ""


PERSONAS: tuple[Persona, ...] = (
    Persona(
        name="loyal_big_spender",
        label="Loyal big spenders",
        share=0.15,
        activity=2.0,
        orders_base=6,
        orders_mean=6.0,
        buy_probability=1.0,
        price_alpha=2.0,
        categories=("Electronics", "Jewelry & Watches", "Home & Kitchen"),
        quantity_max=2,
        community_share=0.04,
        activity_share=0.04,
        return_rate=0.04,
        signup_days=(200, 1100),
        active_until_days=(0, 6),
        consent_email=0.85,
        consent_push=0.55,
        description="Order every two weeks or so, recently, expensive items (electronics, jewellery, kitchen).",
    ),
    Persona(
        name="bargain_hunter",
        label="Bargain hunters",
        share=0.25,
        activity=1.2,
        orders_base=3,
        orders_mean=4.0,
        buy_probability=1.0,
        price_alpha=-2.5,
        categories=("Grocery", "Beauty", "Toys & Games"),
        quantity_max=4,
        community_share=0.03,
        activity_share=0.03,
        return_rate=0.08,
        signup_days=(200, 900),
        active_until_days=(0, 20),
        consent_email=0.75,
        consent_push=0.45,
        description="Regular small baskets of cheap items (grocery, beauty, toys), several of each, more returns.",
    ),
    Persona(
        name="new_visitor",
        label="New visitors",
        share=0.20,
        activity=0.5,
        orders_base=1,
        orders_mean=0.0,
        buy_probability=0.1,
        price_alpha=0.0,
        categories=("Fashion", "Sports & Outdoors"),
        quantity_max=1,
        community_share=0.02,
        activity_share=0.03,
        return_rate=0.02,
        signup_days=(1, 30),
        active_until_days=(0, 2),
        consent_email=0.6,
        consent_push=0.3,
        description="Signed up in the last 30 days; browse fashion and sports; about one in ten has bought once.",
    ),
    Persona(
        name="lapsed",
        label="Lapsed customers",
        share=0.20,
        activity=0.6,
        orders_base=1,
        orders_mean=2.0,
        buy_probability=1.0,
        price_alpha=0.0,
        categories=("Garden", "Books", "Pet Supplies"),
        quantity_max=2,
        community_share=0.02,
        activity_share=0.02,
        return_rate=0.04,
        signup_days=(400, 1500),
        active_until_days=(110, 140),
        consent_email=0.65,
        consent_push=0.3,
        description="Bought a few times early in the period (garden, books, pets), nothing in the last ~4 months.",
    ),
    Persona(
        name="community_enthusiast",
        label="Community enthusiasts",
        share=0.20,
        activity=1.8,
        orders_base=1,
        orders_mean=1.5,
        buy_probability=1.0,
        price_alpha=0.0,
        categories=("Sports & Outdoors", "Health & Wellness", "Books"),
        quantity_max=1,
        community_share=0.65,
        activity_share=0.12,
        return_rate=0.03,
        signup_days=(150, 1000),
        active_until_days=(0, 5),
        consent_email=0.7,
        consent_push=0.6,
        description="Post, comment, like and share community content and join activities; buy now and then.",
    ),
)

# Order session template: event type, probability the slot is present, quantity/amount carried.
_ORDER_SLOTS = (
    ("view", 1.0),
    ("view", 0.5),
    ("click", 0.4),
    ("add_to_cart", 1.0),
    ("purchase", 1.0),
    ("rating", 0.15),
    ("return", None),
)
_COMMUNITY_TYPES = (("view", 0.30), ("like", 0.30), ("comment", 0.18), ("post", 0.10), ("share", 0.12))
_ACTIVITY_TYPES = (("view", 0.55), ("click", 0.35), ("share", 0.10))
_BROWSE_TYPES = (
    ("view", 0.56),
    ("click", 0.16),
    ("search", 0.12),
    ("favorite", 0.05),
    ("add_to_cart", 0.08),
    ("share", 0.03),
)

EVENT_COLUMNS = ("external_id", "customer", "item_kind", "item", "type", "value", "amount", "occurred_at", "context")


def _width(n: int, minimum: int) -> int:
    return max(minimum, len(str(max(n - 1, 0))))


def _ids(prefix: str, start: int, stop: int, width: int) -> np.ndarray:
    return np.array([f"{prefix}{i:0{width}d}" for i in range(start, stop)], dtype=object)


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to ``weights`` that sum exactly to ``total`` (ties by index)."""
    raw = total * weights / weights.sum()
    out = np.floor(raw).astype(np.int64)
    short = total - int(out.sum())
    if short > 0:
        order = np.argsort(-(raw - out), kind="stable")
        out[order[:short]] += 1
    return out


def _choice(rng: np.random.Generator, cum: np.ndarray, size: int) -> np.ndarray:
    """Vectorised categorical draw from a cumulative distribution."""
    return np.minimum(np.searchsorted(cum, rng.random(size) * cum[-1], side="right"), len(cum) - 1)


def _type_draw(rng: np.random.Generator, table, size: int) -> np.ndarray:
    names = np.array([t for t, _ in table], dtype=object)
    cum = np.cumsum([p for _, p in table])
    return names[_choice(rng, cum, size)]


@dataclass
class DemoShop:
    """A generated shop. ``customers`` and ``items`` are frames; events stream from ``iter_events()``."""

    seed: int
    now: pd.Timestamp
    months: int
    n_events: int
    chunk_size: int
    customers: pd.DataFrame
    items: pd.DataFrame
    personas: tuple[Persona, ...] = PERSONAS
    # internal arrays used by iter_events
    _persona_idx: np.ndarray = field(repr=False, default=None)
    _budget: np.ndarray = field(repr=False, default=None)
    _signup_age: np.ndarray = field(repr=False, default=None)  # seconds before now
    _until_age: np.ndarray = field(repr=False, default=None)  # seconds before now
    _product_cum: np.ndarray = field(repr=False, default=None)  # personas x products cumulative weights
    _activity_cum: np.ndarray = field(repr=False, default=None)
    _post_cum: np.ndarray = field(repr=False, default=None)

    @property
    def window_seconds(self) -> float:
        return (self.now - (self.now - pd.DateOffset(months=self.months))).total_seconds()

    def blocks(self) -> list[tuple[int, int]]:
        """Customer index ranges whose event budgets each fit in ``chunk_size`` (a single customer
        larger than a chunk forms its own block, and its events are split across chunks)."""
        cum = np.cumsum(self._budget)
        bounds = [0]
        start_total = 0
        n = len(self._budget)
        while bounds[-1] < n:
            lo = bounds[-1]
            hi = int(np.searchsorted(cum, start_total + self.chunk_size, side="right"))
            hi = max(hi, lo + 1)
            bounds.append(min(hi, n))
            start_total = int(cum[bounds[-1] - 1])
        return list(zip(bounds[:-1], bounds[1:], strict=False))

    def iter_events(self) -> Iterator[pd.DataFrame]:
        """Yield event chunks of at most ``chunk_size`` rows, ordered by customer then time.

        A chunk holds all the events of each of its customers (so per-customer steps can run
        chunk by chunk), except for a customer with more than ``chunk_size`` events on their
        own, whose events are split over consecutive chunks.

        Columns: external_id, customer, item_kind, item, type, value, amount, occurred_at
        (datetime64[ns, UTC]), context (dict or None).
        """
        offset = 0
        for block_no, (lo, hi) in enumerate(self.blocks()):
            frame = self._block_events(block_no, lo, hi, offset)
            offset += len(frame)
            for start in range(0, len(frame), self.chunk_size):
                yield frame.iloc[start : start + self.chunk_size].reset_index(drop=True)

    def events(self) -> pd.DataFrame:
        """All events in one frame (for small shops and tests)."""
        chunks = list(self.iter_events())
        if not chunks:
            return self._empty_events()
        return pd.concat(chunks, ignore_index=True)

    @staticmethod
    def _empty_events() -> pd.DataFrame:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in EVENT_COLUMNS}).astype(
            {"value": float, "amount": float, "occurred_at": "datetime64[ns, UTC]"}
        )

    # ------------------------------------------------------------------ events of one block
    def _block_events(self, block_no: int, lo: int, hi: int, id_offset: int) -> pd.DataFrame:
        """The events of customers lo..hi: order sessions first, then community, activity and
        browsing events fill each customer's budget; sorted by customer, then time. The steps
        draw from one generator in a fixed order, so the block is the same for the same seed."""
        rng = np.random.default_rng([self.seed, 7, block_no])
        block = self._block(lo, hi)
        cols: dict[str, list] = {k: [] for k in ("cust", "kind", "item", "type", "value", "amount", "age", "order")}
        rest = self._order_events(rng, block, cols)
        self._fill_events(rng, block, rest, cols)
        return self._events_frame(rng, block, cols, id_offset)

    def _block(self, lo: int, hi: int) -> _Block:
        start_age = np.minimum(self._signup_age[lo:hi], self.window_seconds)  # seconds before now
        end_age = np.minimum(self._until_age[lo:hi], start_age * 0.8)
        return _Block(
            lo=lo,
            hi=hi,
            pidx=self._persona_idx[lo:hi],
            budget=self._budget[lo:hi],
            end_age=end_age,
            span=start_age - end_age,
        )

    def _order_events(self, rng: np.random.Generator, block: _Block, cols: dict[str, list]) -> np.ndarray:
        """Order sessions (views, carts, a purchase, maybe a rating or a return), kept whole while
        they fit each customer's budget, appended to ``cols``; returns the budget left."""
        pidx, budget, end_age, span, n_cust = block.pidx, block.budget, block.end_age, block.span, block.n
        products = self.items[self.items["kind"] == "product"]
        prod_ids = products["external_id"].to_numpy(dtype=object)
        prod_price = products["price"].to_numpy(dtype=float)
        personas = self.personas
        base = np.array([p.orders_base for p in personas])[pidx]
        mean = np.array([p.orders_mean for p in personas])[pidx]
        buy_p = np.array([p.buy_probability for p in personas])[pidx]
        n_orders = (base + rng.poisson(mean)) * (rng.random(n_cust) < buy_p)
        n_orders = np.where(budget > 0, n_orders, 0)
        o_cust = np.repeat(np.arange(n_cust), n_orders)  # local customer index per order
        o_rank = np.arange(len(o_cust)) - np.repeat(np.cumsum(n_orders) - n_orders, n_orders)
        n_o = len(o_cust)
        o_persona = pidx[o_cust]
        o_item = np.empty(n_o, dtype=np.int64)
        for k in range(len(personas)):
            sel = np.flatnonzero(o_persona == k)
            o_item[sel] = _choice(rng, self._product_cum[k], len(sel))
        qmax = np.array([p.quantity_max for p in personas])[o_persona]
        o_qty = 1 + np.floor(rng.random(n_o) ** 2 * qmax).astype(np.int64)
        o_qty = np.minimum(o_qty, qmax)
        # session start: uniform over the customer's active span, at least 2 hours before its end
        o_start = end_age[o_cust] + 7200.0 + rng.random(n_o) * np.maximum(span[o_cust] - 7200.0, 0.0)
        return_rate = np.array([p.return_rate for p in personas])[o_persona]
        slots = []  # (order index array, type, age seconds)
        offset_s = np.zeros(n_o)
        for etype, prob in _ORDER_SLOTS:
            if etype == "rating":
                present = rng.random(n_o) < prob
                age = o_start - offset_s - rng.uniform(2, 20, n_o) * DAY
            elif etype == "return":
                present = rng.random(n_o) < return_rate
                age = o_start - offset_s - rng.uniform(3, 25, n_o) * DAY
            else:
                present = rng.random(n_o) < prob
                offset_s = offset_s + rng.uniform(20, 600, n_o)
                age = o_start - offset_s
            present &= age > 0  # never after now
            slots.append((np.flatnonzero(present), etype, age))
        # events per order and trimming: keep whole orders while they fit the customer's budget
        per_order = np.zeros(n_o, dtype=np.int64)
        for idx, _, _ in slots:
            per_order[idx] += 1
        cum_in_cust = np.cumsum(per_order)
        cust_first = np.cumsum(n_orders) - n_orders
        before = np.concatenate([[0], cum_in_cust])[cust_first[o_cust]]
        within = cum_in_cust - before  # events used by this customer's orders up to this one
        keep_order = within <= budget[o_cust]
        used = np.bincount(o_cust[keep_order], weights=per_order[keep_order], minlength=n_cust).astype(np.int64)

        for idx, etype, age in slots:
            idx = idx[keep_order[idx]]
            cols["cust"].append(o_cust[idx])
            cols["kind"].append(np.full(len(idx), "product", dtype=object))
            cols["item"].append(prod_ids[o_item[idx]])
            cols["type"].append(np.full(len(idx), etype, dtype=object))
            if etype in ("add_to_cart", "purchase", "return"):
                val = o_qty[idx].astype(float)
            elif etype == "rating":
                # big spenders and enthusiasts rate higher; bargain hunters more mixed
                mood = np.array([4.3, 3.6, 3.9, 3.5, 4.2])[np.minimum(o_persona[idx], 4)]
                val = np.clip(np.round(mood + rng.normal(0, 0.9, len(idx))), 1, 5)
            else:
                val = np.full(len(idx), np.nan)
            cols["value"].append(val)
            amt = o_qty[idx] * prod_price[o_item[idx]] if etype in ("purchase", "return") else np.full(len(idx), np.nan)
            cols["amount"].append(np.round(amt, 2))
            cols["age"].append(age[idx])
            cols["order"].append(np.where(etype == "purchase", o_rank[idx], -1))
        return budget - used

    def _fill_events(self, rng: np.random.Generator, block: _Block, rest: np.ndarray, cols: dict[str, list]) -> None:
        """Community, activity and browsing events for the rest of each customer's budget, appended to ``cols``."""
        pidx, end_age, span, n_cust = block.pidx, block.end_age, block.span, block.n
        personas = self.personas
        comm_share = np.array([p.community_share for p in personas])[pidx]
        act_share = np.array([p.activity_share for p in personas])[pidx]
        n_comm = rng.binomial(rest, comm_share)
        n_act = rng.binomial(rest - n_comm, act_share)
        n_browse = rest - n_comm - n_act
        for kind, counts in (("post", n_comm), ("activity", n_act), ("product", n_browse)):
            c = np.repeat(np.arange(n_cust), counts)
            n = len(c)
            pers = pidx[c]
            item_idx = np.empty(n, dtype=np.int64)
            cum_table = {"post": self._post_cum, "activity": self._activity_cum, "product": self._product_cum}[kind]
            for k in range(len(personas)):
                sel = np.flatnonzero(pers == k)
                item_idx[sel] = _choice(rng, cum_table[k], len(sel))
            sub = self.items[self.items["kind"] == kind]["external_id"].to_numpy(dtype=object)
            table = {"post": _COMMUNITY_TYPES, "activity": _ACTIVITY_TYPES, "product": _BROWSE_TYPES}[kind]
            etype = _type_draw(rng, table, n)
            items = sub[item_idx]
            kinds = np.full(n, kind, dtype=object)
            if kind == "product":
                search = etype == "search"
                items = np.where(search, None, items)
                kinds = np.where(search, None, kinds)
            value = np.full(n, np.nan)
            if kind == "product":
                value = np.where(etype == "add_to_cart", 1.0, np.nan)
            # browsing is slightly front-loaded towards the recent end for active customers
            u = rng.random(n)
            age = end_age[c] + u * span[c]
            cols["cust"].append(c)
            cols["kind"].append(kinds)
            cols["item"].append(items)
            cols["type"].append(etype)
            cols["value"].append(value)
            cols["amount"].append(np.full(n, np.nan))
            cols["age"].append(age)
            cols["order"].append(np.full(n, -1))

    def _events_frame(
        self, rng: np.random.Generator, block: _Block, cols: dict[str, list], id_offset: int
    ) -> pd.DataFrame:
        """The block's events as one frame, by customer then oldest first, with their contexts and ids."""
        cust_l = np.concatenate(cols["cust"])
        age = np.maximum(np.concatenate(cols["age"]), 1.0)
        order = np.lexsort((-age, cust_l))  # by customer, then oldest first
        cust_l = cust_l[order]
        age = age[order]
        etype = np.concatenate(cols["type"])[order]
        order_rank = np.concatenate(cols["order"])[order]
        n = len(cust_l)
        cust_ext = self.customers["external_id"].to_numpy(dtype=object)[block.lo : block.hi][cust_l]
        occurred = self.now - pd.to_timedelta(np.floor(age), unit="s")

        # contexts: channel/device for everything, order id on purchases, a query on searches
        channel = CHANNELS[_choice(rng, np.cumsum([0.55, 0.35, 0.10]), n)]
        device = DEVICES[_choice(rng, np.cumsum([0.6, 0.32, 0.08]), n)]
        cat_names = np.array(sorted(set(self.items["category"])), dtype=object)
        query_cat = cat_names[rng.integers(0, len(cat_names), n)]
        context = np.empty(n, dtype=object)
        for i, (ch, dv, t, rank, cu, q) in enumerate(
            zip(channel, device, etype, order_rank, cust_ext, query_cat, strict=False)
        ):
            if t == "purchase":
                context[i] = {"channel": ch, "device": dv, "order_id": f"o-{cu}-{rank:03d}"}
            elif t == "search":
                context[i] = {"channel": ch, "device": dv, "query": q.lower()}
            else:
                context[i] = {"channel": ch, "device": dv}
        width = _width(self.n_events, 8)
        frame = pd.DataFrame(
            {
                "external_id": _ids("e", id_offset, id_offset + n, width),
                "customer": cust_ext,
                "item_kind": np.concatenate(cols["kind"])[order],
                "item": np.concatenate(cols["item"])[order],
                "type": etype,
                "value": np.concatenate(cols["value"])[order],
                "amount": np.concatenate(cols["amount"])[order],
                "occurred_at": occurred,
                "context": context,
            }
        )
        return frame


@dataclass
class _Block:
    """Customers lo..hi of one block: their persona, event budget and active span (seconds before now)."""

    lo: int
    hi: int
    pidx: np.ndarray
    budget: np.ndarray
    end_age: np.ndarray
    span: np.ndarray

    @property
    def n(self) -> int:
        return self.hi - self.lo


def _default_now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(UTC)).floor("h")


def _as_utc(now: datetime | pd.Timestamp | None) -> pd.Timestamp:
    if now is None:
        return _default_now()
    ts = pd.Timestamp(now)
    if ts.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return ts.tz_convert("UTC").floor("s")


def _categories(n_categories: int):
    if n_categories < 1:
        raise ValueError("n_categories must be at least 1")
    cats = list(CATEGORIES[:n_categories])
    for j in range(len(cats), n_categories):
        cats.append((f"Category {j + 1}", 30.0, 0.6, ("Item",)))
    return cats


def _make_items(rng, now, window_s, n_products, n_activities, n_posts, cats, community_authors):
    names = np.array([c[0] for c in cats], dtype=object)
    n_cat = len(cats)
    # products: categories spread evenly, then shuffled
    p_cat = rng.permutation(np.arange(n_products) % n_cat)
    medians = np.array([c[1] for c in cats])[p_cat]
    sigmas = np.array([c[2] for c in cats])[p_cat]
    price = np.round(np.exp(np.log(medians) + sigmas * rng.standard_normal(n_products)), 2)
    price = np.maximum(price, 0.99)
    nouns = [c[3] for c in cats]
    noun_pick = rng.integers(0, 6, n_products)
    p_title = [
        f"{nouns[c][k % len(nouns[c])]} #{i + 1}" for i, (c, k) in enumerate(zip(p_cat, noun_pick, strict=False))
    ]
    active = rng.random(n_products) >= 0.03
    p_created = now - pd.to_timedelta(np.floor(window_s + rng.uniform(0, 700, n_products) * DAY), unit="s")
    brands = np.array(["Northwind", "Acme", "Globex", "Umbrella", "Initech", "Hooli", "Vandelay"], dtype=object)
    p_brand = brands[rng.integers(0, len(brands), n_products)]
    p_attrs = [
        {"brand": b, "popularity_rank": int(r)} for b, r in zip(p_brand, rng.permutation(n_products) + 1, strict=False)
    ]

    a_cat = np.arange(n_activities) % n_cat
    a_title = [
        f"{ACTIVITY_TITLES[i % len(ACTIVITY_TITLES)]}"
        + (f" #{i // len(ACTIVITY_TITLES) + 1}" if i >= len(ACTIVITY_TITLES) else "")
        for i in range(n_activities)
    ]
    a_start = now + pd.to_timedelta(rng.uniform(-60, 60, n_activities) * DAY, unit="s").floor("h")
    a_attrs = [
        {"starts_at": s.isoformat(), "capacity": int(c)}
        for s, c in zip(a_start, rng.integers(10, 80, n_activities), strict=False)
    ]
    a_created = now - pd.to_timedelta(np.floor(rng.uniform(30, 200, n_activities) * DAY), unit="s")

    s_cat = rng.integers(0, n_cat, n_posts)
    tmpl = rng.integers(0, len(POST_TEMPLATES), n_posts)
    s_title = [f"{POST_TEMPLATES[t]} {nouns[c][t % len(nouns[c])].lower()}" for t, c in zip(tmpl, s_cat, strict=False)]
    authors = (
        community_authors[rng.integers(0, len(community_authors), n_posts)]
        if len(community_authors)
        else np.full(n_posts, None)
    )
    s_attrs = [{"author": a} for a in authors]
    s_created = now - pd.to_timedelta(np.floor(rng.uniform(1, window_s / DAY, n_posts) * DAY), unit="s")

    items = pd.DataFrame(
        {
            "external_id": np.concatenate(
                [
                    _ids("p", 1, n_products + 1, _width(n_products + 1, 5)),
                    _ids("act", 1, n_activities + 1, _width(n_activities + 1, 3)),
                    _ids("post", 1, n_posts + 1, _width(n_posts + 1, 4)),
                ]
            ),
            "kind": ["product"] * n_products + ["activity"] * n_activities + ["post"] * n_posts,
            "title": p_title + a_title + s_title,
            "category": np.concatenate([names[p_cat], names[a_cat], names[s_cat]]),
            "price": np.concatenate([price, np.full(n_activities + n_posts, np.nan)]),
            "attributes": p_attrs + a_attrs + s_attrs,
            "active": np.concatenate([active, np.ones(n_activities + n_posts, dtype=bool)]),
            "created_at": pd.DatetimeIndex(
                np.concatenate([p_created.values, a_created.values, s_created.values])
            ).tz_localize("UTC"),
        }
    )
    return items


def _make_customers(rng, n_customers, personas, now_ts):
    """Customers of the planted personas: the frame, each one's persona index, and their signup and
    last-activity ages (seconds before now)."""
    counts = _largest_remainder(n_customers, np.array([p.share for p in personas]))
    pidx = rng.permutation(np.repeat(np.arange(len(personas)), counts))
    first = np.array(FIRST_NAMES, dtype=object)[rng.integers(0, len(FIRST_NAMES), n_customers)]
    last = np.array(LAST_NAMES, dtype=object)[rng.integers(0, len(LAST_NAMES), n_customers)]
    ext = _ids("c", 0, n_customers, _width(n_customers, 6))
    name = first + " " + last
    ascii_last = pd.Series(last).str.normalize("NFKD").str.encode("ascii", "ignore").str.decode("ascii")
    email = (
        pd.Series(first).str.lower()
        + "."
        + ascii_last.str.lower().str.replace(" ", "", regex=False)
        + pd.Series(ext).str[1:]
        + "@example.com"
    )
    tz_names = np.array([t for t, _ in TIME_ZONES], dtype=object)
    tz = tz_names[_choice(rng, np.cumsum([w for _, w in TIME_ZONES]), n_customers)]
    lo = np.array([p.signup_days[0] for p in personas])[pidx]
    hi = np.array([p.signup_days[1] for p in personas])[pidx]
    signup_age = np.floor((lo + rng.random(n_customers) * (hi - lo)) * DAY)
    ulo = np.array([p.active_until_days[0] for p in personas])[pidx]
    uhi = np.array([p.active_until_days[1] for p in personas])[pidx]
    until_age = (ulo + rng.random(n_customers) * (uhi - ulo)) * DAY
    consent_email = rng.random(n_customers) < np.array([p.consent_email for p in personas])[pidx]
    consent_push = rng.random(n_customers) < np.array([p.consent_push for p in personas])[pidx]
    consent_in_app = rng.random(n_customers) < 0.9
    persona_names = np.array([p.name for p in personas], dtype=object)[pidx]
    customers = pd.DataFrame(
        {
            "external_id": ext,
            "name": name,
            "email": email.to_numpy(dtype=object),
            "time_zone": tz,
            "consent_in_app": consent_in_app,
            "consent_email": consent_email,
            "consent_push": consent_push,
            "created_at": now_ts - pd.to_timedelta(signup_age, unit="s"),
            "attributes": [{"persona": p} for p in persona_names],
            "persona": persona_names,
        }
    )
    return customers, pidx, signup_age, until_age


def _persona_weights(rng, items, personas, cat_names):
    """Cumulative item-choice weights per persona, per item kind."""
    out = {}
    for kind in ("product", "activity", "post"):
        sub = items[items["kind"] == kind]
        n = len(sub)
        cat = sub["category"].to_numpy()
        popularity = 1.0 / (rng.permutation(n) + 5.0) ** 0.7  # long-tailed popularity
        rows = []
        for p in personas:
            w = popularity * np.where(np.isin(cat, p.categories), 6.0, 1.0)
            if kind == "product":
                price = sub["price"].to_numpy()
                cat_median = sub.groupby("category")["price"].transform("median").to_numpy()
                w = w * (price / cat_median) ** p.price_alpha
                w = w * np.where(sub["active"].to_numpy(), 1.0, 0.05)
            rows.append(np.cumsum(w) if n else np.zeros(0))
        out[kind] = np.array(rows) if n else np.zeros((len(personas), 0))
    return out


def generate_shop(
    *,
    seed: int = 42,
    n_customers: int = 2000,
    n_events: int = 150_000,
    n_products: int = 400,
    n_categories: int = 12,
    n_activities: int = 10,
    n_posts: int = 200,
    now: datetime | None = None,
    months: int = 6,
    chunk_size: int = 200_000,
) -> DemoShop:
    """Generate a deterministic demo shop.

    Returns a :class:`DemoShop` whose ``customers`` and ``items`` frames are built
    eagerly and whose events stream from ``iter_events()`` (exactly ``n_events`` rows,
    in chunks of at most ``chunk_size`` rows, all within ``months`` months before
    ``now`` and never after it). ``now`` defaults to the current UTC hour.
    """
    if n_customers < 1 or n_products < 1 or n_activities < 1 or n_posts < 1:
        raise ValueError("n_customers, n_products, n_activities and n_posts must be positive")
    if n_events < 0 or chunk_size < 1 or months < 1:
        raise ValueError("n_events must be >= 0, chunk_size and months >= 1")
    now_ts = _as_utc(now)
    window_s = (now_ts - (now_ts - pd.DateOffset(months=months))).total_seconds()
    rng = np.random.default_rng([seed, 1])
    cats = _categories(n_categories)
    cat_names = [c[0] for c in cats]
    personas = tuple(
        p
        if all(c in cat_names for c in p.categories)
        else Persona(
            **{
                **p.__dict__,
                "categories": tuple(cat_names[(i * 3 + j) % len(cat_names)] for j in range(len(p.categories))),
            }
        )
        for i, p in enumerate(PERSONAS)
    )

    # ---- customers -----------------------------------------------------------------------
    customers, pidx, signup_age, until_age = _make_customers(rng, n_customers, personas, now_ts)
    ext = customers["external_id"].to_numpy(dtype=object)

    # ---- catalogue -------------------------------------------------------------------------
    authors = ext[pidx == [p.name for p in personas].index("community_enthusiast")]
    items = _make_items(rng, now_ts, window_s, n_products, n_activities, n_posts, cats, authors)
    cum = _persona_weights(rng, items, personas, cat_names)

    # ---- exact event budgets ---------------------------------------------------------------
    activity = np.array([p.activity for p in personas])[pidx] * rng.lognormal(0.0, 0.35, n_customers)
    budget = _largest_remainder(n_events, activity) if n_events else np.zeros(n_customers, dtype=np.int64)

    return DemoShop(
        seed=seed,
        now=now_ts,
        months=months,
        n_events=n_events,
        chunk_size=chunk_size,
        customers=customers,
        items=items,
        personas=personas,
        _persona_idx=pidx,
        _budget=budget,
        _signup_age=signup_age,
        _until_age=until_age,
        _product_cum=cum["product"],
        _activity_cum=cum["activity"],
        _post_cum=cum["post"],
    )


# ---------------------------------------------------------------------------------------------
# How a demo customer responds to what they are shown (the experiments' demo, docs/experiments.md)
# ---------------------------------------------------------------------------------------------

#: P(click) = 1 - exp(-CLICK_RATE * affinity): about 2% for an item of no special appeal.
RESPONSE_CLICK_RATE = 0.02
#: P(purchase | click) for the best-matching item of a customer who buys (scaled by the persona's
#: buy_probability and the item's appeal).
RESPONSE_BUY_GIVEN_CLICK = 0.30


def response_probabilities(
    persona_names: np.ndarray,
    categories: np.ndarray,
    price_ratio: np.ndarray,
    *,
    personas: tuple[Persona, ...] = PERSONAS,
) -> tuple[np.ndarray, np.ndarray]:
    """The planted truth of how customers respond to items shown to them, pair by pair.

    A customer's appeal for an item follows their persona exactly as the generator planted it (the
    preferred categories weigh 6×, the price relative to the category's median is raised to the
    persona's ``price_alpha``), never any model's scores. Returns (P(click), P(purchase | click)),
    arrays of the pairs' shape. A customer of no known persona finds every item of ordinary appeal.

    Parameters
    ----------
    persona_names : the persona name of each pair's customer ("" or unknown: none)
    categories : the category of each pair's item
    price_ratio : each item's price / its category's median price (1 where unknown)
    """
    names = pd.Series(np.asarray(persona_names, dtype=object))
    index = {p.name: i for i, p in enumerate(personas)}
    pidx = names.map(index).fillna(-1).to_numpy(dtype=np.int64)
    known = pidx >= 0
    cats = np.asarray(categories, dtype=object)
    preferred = np.zeros(len(cats), dtype=bool)
    for i, p in enumerate(personas):  # a handful of personas, vectorised over the pairs
        sel = pidx == i
        preferred[sel] = np.isin(cats[sel], p.categories)
    alpha = np.array([p.price_alpha for p in personas] + [0.0])[pidx]
    buy = np.array([p.buy_probability for p in personas] + [0.5])[pidx]
    ratio = np.clip(np.nan_to_num(np.asarray(price_ratio, dtype=np.float64), nan=1.0), 0.05, 20.0)
    affinity = np.where(preferred & known, 6.0, 1.0) * np.clip(ratio**alpha, 0.25, 4.0)
    p_click = 1.0 - np.exp(-RESPONSE_CLICK_RATE * affinity)
    p_buy = buy * RESPONSE_BUY_GIVEN_CLICK * np.minimum(affinity / 6.0, 1.0)
    return p_click, p_buy
