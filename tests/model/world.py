"""The model side of the model-based test: what the manifests say, and the seeded step generator.

The generator is a pure function of (seed, number of steps, enabled step kinds): it evolves a
`World` (the manifests the simulated user keeps) with the manifest edits it draws, and never looks
at what jobrunner or the platform did. So a seed and a step count name one exact step list, and a
failure is replayed by running the same list again (the timing of kills varies; what is killed,
and when in the list, does not).

The world is three manifest files a user could have written:
- `echo.yaml`: a PredictionBatch of `jobrunner/echo` rows (identical rows under different keys,
  secret inputs: a `spec.sensitive` field and a key-named `api_key`), with an output file;
- `slow.yaml`: a PredictionBatch of `jobrunner/sleep` rows, so removals and replaces meet running jobs;
- `train.yaml`: a Model, an n-gram Training into it, and a batch whose version is a reference to
  the training's output (`${Training.t.output.version}`).
"""
from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from typing import Any, Literal

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
NGRAM = "a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174"
SLEEP = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"
MAX_ATTEMPTS = 6  # a platform kill fails the jobs it was running; re-runs retry them

# Step kinds. Every kind runs by default, in CI too. `EXTRA_KINDS` is where a kind that reproduces
# a known, not yet fixed bug waits (opt-in through MODEL_STEPS_EXTRA) until its fix lands: the kinds
# below the weights started there and were turned on once their bugs were fixed.
StepKind = Literal[
    "add_rows", "remove_rows", "rename_row", "change_row", "add_slow", "training",
    "apply", "plan", "crash_apply", "kill_apply", "kill_platform", "faults", "damage_state", "typo",
    "crash_recover", "inspect", "identical_drops", "damage_inplace", "lose_state",
]
WEIGHTS: dict[str, float] = {
    "add_rows": 3.0, "remove_rows": 1.2, "rename_row": 1.0, "change_row": 1.2, "add_slow": 1.5,
    "training": 1.2, "apply": 3.0, "plan": 0.8, "crash_apply": 2.0, "kill_apply": 1.0,
    "kill_platform": 0.7, "faults": 1.2, "damage_state": 0.5, "typo": 0.7, "crash_recover": 0.8,
    "inspect": 0.5, "identical_drops": 0.6, "damage_inplace": 0.4, "lose_state": 0.4,
}
# What these kinds found before their fixes:
# typo: a manifest whose apiVersion is mistyped is treated as removed (its jobs canceled/forgotten).
# crash_recover: restoring state.json.bak after a crash mid-create duplicates the jobs created since.
# identical_drops: identical rows under dropped creates end with swapped / shared remote ids.
# damage_inplace: after a kill inside a state write, the backup can share the state's inode.
# damage_state: the state marked recovered by `state restore-backup` stays so after converged
#   applies, and its lookups then adopt identical siblings' jobs (shared remote ids).
# identical_rows (a flag, not a step): add_rows may add several rows with one input; a lookup
#   after a crash or a retried create can then adopt a sibling's job (shared remote ids).
# lose_state (opt-in: `--extra lose_state`): state.json and its backup both deleted, then the hint
#   (`jobrunner state recover`, with --assign-in-order when it reports ambiguous identical rows)
#   followed. Recovery by lookup cannot know which of several identical jobs a row owned, so after
#   identical rows were removed the checker may call a sibling's job lost: a known limit, not a bug.
FLAGS = frozenset({"identical_rows"})
EXTRA_KINDS: frozenset[str] = frozenset({"lose_state"})
DEFAULT_KINDS = (frozenset(WEIGHTS) | FLAGS) - EXTRA_KINDS

# Named crash points, copied (not imported: the test stays independent of jobrunner's code) from
# docs/reliability.md. A point that does not exist any more simply never fires.
CRASH_POINTS = (
    "apply.locked", "create.intent_saved", "create.sent", "create.recorded", "create.lookup_found",
    "cancel.sent", "wait.status_changed", "wait.terminal", "outputs.before_write", "state.backup_kept",
    "state.tmp_partial", "state.tmp_written", "state.renamed",
)
# Where a crash leaves the most to recover: creates sent or recorded, statuses not yet saved.
RECOVER_POINTS = ("create.intent_saved", "create.sent", "create.recorded", "wait.terminal", "state.renamed")
FAULT_PROFILES = ("errors", "drops", "drops_random", "burst429", "latency", "list_lag", "off")
TYPOS = ("jobrunner/v2", "jobruner/v1", "jobrunner/V1", "jobrunner/v1beta1")


@dataclass(frozen=True)
class Step:
    kind: str
    args: tuple[tuple[str, Any], ...] = ()

    def arg(self, name: str, default: Any = None) -> Any:
        return dict(self.args).get(name, default)

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args)
        return f"{self.kind}({inner})"


@dataclass
class Row:
    key: str
    content: dict[str, Any]


@dataclass
class World:
    """The manifests as the simulated user keeps them. `generation` counts, per address, how many
    times it was removed: a job claimed under an older generation may be forgotten legitimately."""

    sentinels: tuple[str, str]
    echo: list[Row] = field(default_factory=list)
    slow: list[Row] = field(default_factory=list)
    training: str | None = None  # the training text; None = no training (and no `gen` batch)
    gen: list[Row] = field(default_factory=list)
    generation: dict[str, int] = field(default_factory=dict)
    counter: int = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # --- what the world wants ---------------------------------------------------------------
    def desired(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """address -> (job kind, the input the platform must be sent)."""
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        for batch, rows in (("echo", self.echo), ("slow", self.slow), ("gen", self.gen if self.training else [])):
            for row in rows:
                out[f"PredictionBatch/{batch}[{row.key}]"] = ("prediction", dict(row.content))
        if self.training is not None:
            out["Training/t"] = ("training", {"train_data": self.training, "order": 3})
        return out

    def batch_keys(self) -> dict[str, list[str]]:
        """Batches with an output file -> the keys it must hold."""
        out = {"out/echo.jsonl": [r.key for r in self.echo]}
        if self.training is not None and self.gen:
            out["out/gen.jsonl"] = [r.key for r in self.gen]
        return {k: v for k, v in out.items() if v}

    def removed(self, address: str) -> None:
        self.generation[address] = self.generation.get(address, 0) + 1

    # --- the manifest files -----------------------------------------------------------------
    def files(self) -> dict[str, str | None]:
        """file name -> YAML text (None: the file must not exist)."""
        return {
            "echo.yaml": _batch("echo", ECHO, self.echo, output="out/echo.jsonl", sensitive=True),
            "slow.yaml": _batch("slow", SLEEP, self.slow),
            "train.yaml": self._train_yaml(),
        }

    def _train_yaml(self) -> str | None:
        if self.training is None:
            return None
        docs = [
            "kind: Model\nmetadata: {name: dest}\nspec: {provider: local, owner: me, name: model-test, "
            "visibility: private, hardware: cpu}\n",
            "kind: Training\nmetadata: {name: t}\nspec:\n  provider: local\n  model: jobrunner/ngram\n"
            f"  version: {NGRAM}\n  destination: me/model-test\n  retry: {{max_attempts: {MAX_ATTEMPTS}}}\n"
            f"  input:\n    train_data: {json.dumps(self.training)}\n    order: 3\n",
        ]
        text = "".join("---\napiVersion: jobrunner/v1\n" + d for d in docs)
        if self.gen:
            text += _batch("gen", "${Training.t.output.version}", self.gen, output="out/gen.jsonl")
        return text


def _batch(name: str, version: str, rows: list[Row], *, output: str | None = None,
           sensitive: bool = False) -> str | None:
    if not rows:
        return None
    lines = [
        "---", "apiVersion: jobrunner/v1", "kind: PredictionBatch", f"metadata: {{name: {name}}}", "spec:",
        "  provider: local", f"  version: {json.dumps(version)}", f"  retry: {{max_attempts: {MAX_ATTEMPTS}}}",
    ]
    if sensitive:
        lines.append("  sensitive: [secret_word]")
    if output:
        lines.append(f"  output_file: {output}")
    lines.append("  inputs:")
    for row in rows:
        lines.append(f"    - {json.dumps({'key': row.key, **row.content}, sort_keys=True)}")
    return "\n".join(lines) + "\n"


# --- the generator ---------------------------------------------------------------------------


def new_world(seed: int) -> World:
    world = World(sentinels=(f"SENTINEL-secret-{seed}-q7Zx", f"SENTINEL-apikey-{seed}-k3Wv"))
    rng = random.Random(f"world-{seed}")
    for _ in range(3):
        _add_echo(world, rng, identical=False)
    return world


def _add_echo(world: World, rng: random.Random, *, identical: bool) -> str:
    key = world.fresh("e")
    if identical and world.echo:
        content = copy.deepcopy(rng.choice(world.echo).content)
    else:
        content = {"text": f"row {key}", "n": world.counter}
        if rng.random() < 0.3:  # a row holding secrets: one sensitive by listing, one by its name
            content["secret_word"] = world.sentinels[0]
            content["api_key"] = world.sentinels[1]
    world.echo.append(Row(key, content))
    return key


def generate(seed: int, steps: int, kinds: frozenset[str] = DEFAULT_KINDS) -> list[tuple[Step, World]]:
    """`steps` steps, each with the world (the manifests) after it: a pure function of the arguments."""
    rng = random.Random(f"model-{seed}")
    world = new_world(seed)
    names = sorted(k for k in WEIGHTS if k in kinds and k not in FLAGS)
    weights = [WEIGHTS[k] for k in names]
    out: list[tuple[Step, World]] = [(Step("apply", (("parallelism", 10),)), copy.deepcopy(world))]
    while len(out) < steps:
        kind = rng.choices(names, weights)[0]
        step = _draw(kind, world, rng, kinds)
        if step is not None:
            out.append((step, copy.deepcopy(world)))
    return out[:steps]


def _draw(kind: str, world: World, rng: random.Random, kinds: frozenset[str]) -> Step | None:
    """One step of `kind` valid in `world` (or None: nothing to do), applying its edit to `world`."""
    if kind == "add_rows":
        identical = rng.random() < 0.5 and "identical_rows" in kinds
        if identical:  # several samples of one row: the same input under different keys
            keys = [_add_echo(world, rng, identical=False)]
            content = world.echo[-1].content
            for _ in range(rng.randint(2, 5)):
                keys.append(world.fresh("e"))
                world.echo.append(Row(keys[-1], copy.deepcopy(content)))
        else:
            keys = [_add_echo(world, rng, identical=rng.random() < 0.3 and "identical_rows" in kinds)
                    for _ in range(rng.randint(1, 3))]
        return Step(kind, (("keys", tuple(keys)), ("identical", identical)))
    if kind == "remove_rows":
        batch, rows = _pick_batch(world, rng)
        if not rows:
            return None
        gone = rng.sample(rows, min(len(rows), rng.randint(1, 2)))
        for row in gone:
            rows.remove(row)
            world.removed(f"PredictionBatch/{batch}[{row.key}]")
        return Step(kind, (("batch", batch), ("keys", tuple(r.key for r in gone))))
    if kind == "rename_row":
        batch, rows = _pick_batch(world, rng)
        if not rows:
            return None
        row = rng.choice(rows)
        old, row.key = row.key, world.fresh("r")
        world.removed(f"PredictionBatch/{batch}[{old}]")
        return Step(kind, (("batch", batch), ("old", old), ("new", row.key)))
    if kind == "change_row":
        batch, rows = _pick_batch(world, rng)
        if not rows:
            return None
        row = rng.choice(rows)
        world.counter += 1
        if batch == "slow":
            row.content["seconds"] = round(1.0 + rng.random() * 2.5, 3) + world.counter / 1e6
        elif batch == "gen":
            row.content["seed"] = world.counter * 1000
        else:
            row.content["n"] = world.counter * 1000
        return Step(kind, (("batch", batch), ("key", row.key)))
    if kind == "add_slow":
        keys = []
        for _ in range(rng.randint(1, 2)):
            key = world.fresh("s")
            world.slow.append(Row(key, {"seconds": round(1.0 + rng.random() * 3.0, 3) + world.counter / 1e6,
                                        "log_lines": 2}))
            keys.append(key)
        return Step(kind, (("keys", tuple(keys)),))
    if kind == "training":
        return _draw_training(world, rng)
    if kind in ("apply", "plan"):
        return Step(kind, (("parallelism", rng.choice((1, 4, 10))),)) if kind == "apply" else Step(kind)
    if kind == "crash_apply":
        return Step(kind, (("point", rng.choice(CRASH_POINTS)), ("n", rng.randint(1, 3))))
    if kind == "kill_apply":
        return Step(kind, (("after_s", round(rng.uniform(0.15, 2.0), 2)),))
    if kind == "crash_recover":
        return Step(kind, (("point", rng.choice(RECOVER_POINTS)), ("n", rng.randint(1, 4)),
                           ("how", rng.choice(("truncate", "garbage", "empty")))))
    if kind in ("inspect", "lose_state"):
        return Step(kind)
    if kind == "identical_drops":  # several samples of one new row, created at once while creates drop
        first = _add_echo(world, rng, identical=False)
        keys = [first]
        for _ in range(rng.randint(3, 6)):
            keys.append(world.fresh("e"))
            world.echo.append(Row(keys[-1], copy.deepcopy(world.echo[-1].content)))
        return Step(kind, (("keys", tuple(keys)), ("drop_every_nth_create", rng.choice((2, 3)))))
    if kind == "kill_platform":
        return Step(kind, (("after_s", round(rng.uniform(0.2, 2.0), 2)), ("during_apply", rng.random() < 0.8)))
    if kind == "faults":
        return Step(kind, (("profile", rng.choice(FAULT_PROFILES)), ("seed", rng.randint(1, 10**6))))
    if kind in ("damage_state", "damage_inplace"):
        return Step(kind, (("how", rng.choice(("truncate", "garbage", "empty"))),))
    if kind == "typo":
        files = [name for name, text in world.files().items() if text is not None]
        if not files:
            return None  # every manifest file was emptied (all rows removed): nothing to mistype
        return Step(kind, (("file", rng.choice(files)), ("api_version", rng.choice(TYPOS))))
    raise ValueError(f"unknown step kind {kind!r}")


def _pick_batch(world: World, rng: random.Random) -> tuple[str, list[Row]]:
    choices = [("echo", world.echo), ("slow", world.slow)]
    if world.training is not None:
        choices.append(("gen", world.gen))
    choices = [c for c in choices if c[1]]
    return rng.choice(choices) if choices else ("echo", [])


def _draw_training(world: World, rng: random.Random) -> Step:
    if world.training is None:
        world.training = f"the moon and the sun and the stars {world.fresh('t')} " * 3
        world.gen = [Row(world.fresh("g"), {"prompt": "the", "max_tokens": 12, "seed": rng.randint(1, 99)})
                     for _ in range(rng.randint(1, 2))]
        return Step("training", (("action", "add"),))
    if rng.random() < 0.6:  # new training text: the training is replaced, the referencing batch follows
        world.training = f"stars and moons and suns {world.fresh('t')} " * 3
        return Step("training", (("action", "retrain"),))
    world.removed("Training/t")
    for row in world.gen:
        world.removed(f"PredictionBatch/gen[{row.key}]")
    world.training, world.gen = None, []
    return Step("training", (("action", "remove"),))


def kinds_from_env(extra: str | None) -> frozenset[str]:
    """The default kinds plus the comma-separated `extra` ones (MODEL_STEPS_EXTRA); `all` = every kind."""
    names = {n.strip() for n in (extra or "").split(",") if n.strip()}
    if "all" in names:
        return DEFAULT_KINDS | EXTRA_KINDS | FLAGS
    unknown = names - set(WEIGHTS) - FLAGS
    if unknown:
        raise ValueError(f"unknown step kind(s) {sorted(unknown)}; known: {sorted(WEIGHTS)}")
    return DEFAULT_KINDS | frozenset(names)
