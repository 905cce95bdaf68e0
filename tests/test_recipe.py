"""The training-recipe language: defaults, bounds, located diagnostics, --hp overrides, the CLI
on recipes and the shipped recipes' published numbers."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import ghostspec
from ghostspec.cli import run
from ghostspec.diagnostics import Diagnostic, SpecError
from ghostspec.language.recipe import (
    RECIPES_DIR,
    Recipe,
    default_recipe,
    dump_recipe,
    load_recipe,
    rule_problems,
)

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = "ghostspec-recipe: 1\n"


def problems(text: str, *hp: str, name: str = "r.yaml") -> list[Diagnostic]:
    """The diagnostics of an invalid recipe text (it must be invalid)."""
    with pytest.raises(SpecError) as caught:
        load_recipe(name, hp, text=textwrap.dedent(text))
    return caught.value.diagnostics


def where(text: str, line: int, token: str) -> tuple[int, int]:
    """1-based (line, column) of `token` on `line` of `text`, to state positions readably."""
    return line, textwrap.dedent(text).splitlines()[line - 1].index(token) + 1


def at(d: Diagnostic) -> tuple[int | None, int | None]:
    return d.line, d.column


# --- defaults -------------------------------------------------------------------------------


def test_defaults_are_the_contracts() -> None:
    r = load_recipe("r.yaml", text=MINIMAL)
    assert (r.ghostspec_recipe, r.name, r.epochs, r.batch_size, r.input_size) == (
        1,
        None,
        10,
        64,
        None,
    )
    o = r.optimizer
    assert (o.kind, o.lr, o.reference_batch, o.momentum, o.nesterov) == ("sgd", 0.1, 256, 0.9, True)
    assert (o.rho, o.epsilon, o.beta_1, o.beta_2) == (0.9, 0.001, 0.9, 0.999)
    assert (o.weight_decay, o.decay_norm_and_bias) == (1e-5, False)
    s = r.schedule
    assert (s.kind, s.decay_rate, s.decay_epochs, s.min_lr) == ("cosine", 0.973, 2.4, 0.0)
    assert (s.warmup_epochs, s.warmup_lr) == (0.0, 1e-6)
    assert r.label_smoothing == 0.1
    a = r.augment
    assert a.crop is not None and a.randaugment is not None
    assert (a.crop.scale, a.crop.ratio, a.flip, a.erasing) == ((0.08, 1.0), (0.75, 1.3333), True, 0)
    assert (a.randaugment.magnitude, a.randaugment.magnitude_std, a.randaugment.layers) == (
        9,
        0.5,
        2,
    )
    assert r.eval.crop_pct == 0.875
    assert r.ema is not None and r.ema.decay == 0.9999
    assert (r.seed, r.deterministic, r.checkpoint_every, r.early_stopping) == (0, False, 1, None)
    assert (r.precision, r.strategy, r.distill) == ("float32", "auto", None)
    assert r == Recipe.model_validate({"ghostspec-recipe": 1})


def test_scaled_lr_is_the_linear_scaling_rule() -> None:
    r = load_recipe("r.yaml", ["batch_size=512", "optimizer.lr=0.2"], text=MINIMAL)
    assert r.scaled_lr == pytest.approx(0.2 * 512 / 256)


def test_recipes_are_frozen() -> None:
    r = default_recipe()
    with pytest.raises(ValidationError):
        r.epochs = 3  # type: ignore[misc]


def test_optional_sections_take_their_defaults_when_given_empty() -> None:
    r = load_recipe("r.yaml", text=MINIMAL + "early_stopping: {}\ndistill: {teacher: t.keras}\n")
    assert r.early_stopping is not None and r.distill is not None
    es, d = r.early_stopping, r.distill
    assert (es.patience, es.min_delta, es.monitor) == (10, 0.0, "val_top1")
    assert (d.teacher, d.weight, d.temperature, d.teacher_input_size) == ("t.keras", 1.0, 1.0, None)
    r = load_recipe("r.yaml", ["distill.teacher={spec: s.yaml, weights: w.npz}"], text=MINIMAL)
    assert r.distill is not None and not isinstance(r.distill.teacher, str)
    assert (r.distill.teacher.spec, r.distill.teacher.weights) == ("s.yaml", "w.npz")


# --- every field's bounds, through --hp ------------------------------------------------------

# (field, accepted values, refused values), values written as --hp writes them
BOUNDS: list[tuple[str, list[str], list[str]]] = [
    ("epochs", ["1", "100000", "3.0"], ["0", "-1", "1.5", "true", "'3'", "100001"]),
    ("batch_size", ["1", "1048576"], ["0", "1048577", "null"]),
    ("input_size", ["[96, 128]", "null"], ["[0, 96]", "[96]", "[96, 96, 3]", "96"]),
    ("name", ["ft-1.0_x"], ["'a b'", "-x"]),
    ("optimizer.kind", ["sgd", "rmsprop", "adamw"], ["adam", "SGD", "null"]),
    ("optimizer.lr", ["1.0e-6", "100"], ["0", "-0.1", "101", "'0.1'", ".nan"]),
    ("optimizer.reference_batch", ["1"], ["0", "2.5"]),
    ("optimizer.momentum", ["0", "0.99"], ["1", "-0.1"]),
    ("optimizer.nesterov", ["false", "true"], ["'yes'", "1"]),
    ("optimizer.rho", ["0", "0.99"], ["1"]),
    ("optimizer.epsilon", ["1.0e-8", "1"], ["0", "-1"]),
    ("optimizer.beta_1", ["0"], ["1"]),
    ("optimizer.beta_2", ["0.5"], ["1", "-0.5"]),
    ("optimizer.weight_decay", ["0", "1"], ["-1.0e-5", "2"]),
    ("optimizer.decay_norm_and_bias", ["true"], ["1", "'false'"]),
    ("schedule.kind", ["constant", "step", "cosine"], ["linear", "null"]),
    ("schedule.decay_rate", ["1", "0.5"], ["0", "1.01"]),
    ("schedule.decay_epochs", ["0.5", "30"], ["0", "-2"]),
    ("schedule.min_lr", ["0"], ["-1"]),
    ("schedule.warmup_epochs", ["0", "2.5"], ["-1"]),
    ("schedule.warmup_lr", ["0"], ["-1"]),
    ("label_smoothing", ["0", "0.99"], ["1", "-0.1"]),
    ("augment.crop", ["null", "{}"], ["3", "[0.08, 1]"]),
    (
        "augment.crop.scale",
        ["[1, 1]", "[0.01, 0.5]"],
        ["[0, 0.5]", "[0.5, 1.1]", "[0.5]", "[0.9, 0.1]"],
    ),
    ("augment.crop.ratio", ["[1, 1]", "[0.5, 2]"], ["[0, 1]", "[2, 1]", "[1, 2, 3]"]),
    ("augment.flip", ["false"], ["'no'", "0"]),
    ("augment.randaugment", ["null", "{}"], ["[]", "true"]),
    ("augment.randaugment.magnitude", ["0", "10", "4.5"], ["11", "-1"]),
    ("augment.randaugment.magnitude_std", ["0"], ["-0.5", "11"]),
    ("augment.randaugment.layers", ["1", "16"], ["0", "1.5", "17"]),
    ("augment.erasing", ["0", "1"], ["1.1", "-0.1"]),
    ("eval.crop_pct", ["1", "0.5"], ["0", "1.2"]),
    ("ema", ["null", "{}"], ["0.9999"]),
    ("ema.decay", ["0.5", "0.99999"], ["0", "1"]),
    ("seed", ["0", "4294967295"], ["-1", "4294967296"]),
    ("deterministic", ["true"], ["'true'", "1"]),
    ("checkpoint_every", ["1", "5"], ["0"]),
    (
        "early_stopping",
        ["null", "{patience: 3, min_delta: 0.01, monitor: val_loss}"],
        ["{patience: 0}", "{monitor: val_acc}", "{min_delta: -1}"],
    ),
    ("precision", ["float32", "mixed_float16", "mixed_bfloat16"], ["float64", "fp16"]),
    ("strategy", ["auto", "one", "mirrored", "multiworker"], ["tpu", "null"]),
    (
        "distill",
        ["null", "{teacher: big.keras}", "{teacher: {spec: s.yaml, weights: w.npz}}"],
        ["{teacher: big.h5}", "{weight: 1}", "{teacher: {spec: s.yaml}}", "{teacher: ''}"],
    ),
    ("distill.weight", ["0", "2.5"], ["-1"]),
    ("distill.temperature", ["0.5", "4"], ["0", "-1"]),
    ("distill.teacher_input_size", ["[256, 256]", "null"], ["[0, 256]", "[256]"]),
]
ACCEPTED = [(f, v) for f, ok, _ in BOUNDS for v in ok]
REFUSED = [(f, v) for f, _, bad in BOUNDS for v in bad]
DISTILL_BASE = ["distill={teacher: t.keras}"]


def _hp(field: str, value: str) -> list[str]:
    base = DISTILL_BASE if field.startswith("distill.") else []
    return [*base, f"{field}={value}"]


@pytest.mark.parametrize(("field", "value"), ACCEPTED, ids=[f"{f}={v}" for f, v in ACCEPTED])
def test_accepted_values(field: str, value: str) -> None:
    load_recipe("r.yaml", _hp(field, value), text=MINIMAL)


@pytest.mark.parametrize(("field", "value"), REFUSED, ids=[f"{f}={v}" for f, v in REFUSED])
def test_refused_values_name_the_field_and_the_override(field: str, value: str) -> None:
    (d,) = problems(MINIMAL, *_hp(field, value))
    assert d.path.startswith(field), d
    assert d.override == f"{field}={value}"
    assert d.override_flag == "--hp"
    assert "(from --hp " in d.render()


def test_every_field_has_bounds_tested() -> None:
    """Each leaf field of the models appears in BOUNDS (directly or through its section)."""

    def leaves(model: type[Any], prefix: str) -> set[str]:
        out = set()
        for name, field in model.model_fields.items():
            key = f"{prefix}{field.alias or name}"
            inner = [
                a
                for a in getattr(field.annotation, "__args__", (field.annotation,))
                if isinstance(a, type) and hasattr(a, "model_fields")
            ]
            out.add(key)
            for sub in inner:
                out |= leaves(sub, key + ".")
        return out

    tested = {f for f, _, _ in BOUNDS}
    untested = {
        leaf
        for leaf in leaves(Recipe, "")
        if not any(leaf == t or leaf.startswith(t + ".") for t in tested)
    }
    assert untested == {
        "ghostspec-recipe",
        "description",
        "optimizer",
        "schedule",
        "augment",
        "eval",
    }


# --- located diagnostics --------------------------------------------------------------------

MANY = """\
ghostspec-recipe: 1
epochs: 0
optimizer:
  kind: adam
  lr: -1
schedule: {kind: step, decay_rate: 2}
augment:
  crop: {scale: [0.5, 1.5]}
  erasng: 0.2
"""


def test_every_schema_problem_at_once_with_its_position() -> None:
    found = {d.path: d for d in problems(MANY)}
    assert set(found) == {
        "epochs",
        "optimizer.kind",
        "optimizer.lr",
        "schedule.decay_rate",
        "augment.crop.scale[1]",
        "augment.erasng",
    }
    assert at(found["epochs"]) == where(MANY, 2, "0")
    assert at(found["optimizer.kind"]) == where(MANY, 4, "adam")
    assert "'adam' is not one of 'sgd', 'rmsprop' or 'adamw'" in found["optimizer.kind"].message
    assert at(found["optimizer.lr"]) == where(MANY, 5, "-1")
    assert at(found["schedule.decay_rate"]) == where(MANY, 6, "2}")
    assert at(found["augment.crop.scale[1]"]) == where(MANY, 8, "1.5")
    erasing = found["augment.erasng"]
    assert at(erasing) == where(MANY, 9, "erasng")  # the key, not its value
    assert erasing.hint == "did you mean 'erasing'?"


RULES = """\
ghostspec-recipe: 1
epochs: 2
batch_size: 32
optimizer: {kind: adamw, lr: 0.001, reference_batch: 256, nesterov: true}
schedule:
  warmup_epochs: 3
  warmup_lr: 0.01
  min_lr: 0.5
"""


def test_rules_between_fields_are_located_on_the_node_to_change() -> None:
    found = {d.path: d for d in problems(RULES)}
    assert set(found) == {
        "optimizer.nesterov",
        "schedule.warmup_epochs",
        "schedule.warmup_lr",
        "schedule.min_lr",
    }
    assert at(found["optimizer.nesterov"]) == where(RULES, 4, "true")
    assert "adamw has none" in found["optimizer.nesterov"].message
    assert at(found["schedule.warmup_epochs"]) == where(RULES, 6, "3")
    assert "longer than the whole run of 2" in found["schedule.warmup_epochs"].message
    warmup = found["schedule.warmup_lr"]
    assert at(warmup) == where(RULES, 7, "0.01")
    # the scaled rate: 0.001 * 32 / 256
    assert "scaled lr 0.000125" in warmup.message
    assert warmup.hint is not None and "at most 0.000125" in warmup.hint
    assert at(found["schedule.min_lr"]) == where(RULES, 8, "0.5")


def test_rules_hold_for_recipes_built_in_python_too() -> None:
    data = {"ghostspec-recipe": 1, "schedule": {"warmup_epochs": 1, "warmup_lr": 1.0}}
    with pytest.raises(ValidationError, match=r"schedule\.warmup_lr"):
        Recipe.model_validate(data)
    recipe = Recipe.model_validate({**data, "optimizer": {"lr": 4.0}})
    assert rule_problems(recipe) == []


def test_nesterov_is_ignored_unless_written_for_another_optimizer() -> None:
    r = load_recipe("r.yaml", ["optimizer.kind=rmsprop"], text=MINIMAL)
    assert r.optimizer.nesterov  # the default, unused by rmsprop
    load_recipe("r.yaml", ["optimizer.kind=adamw", "optimizer.nesterov=false"], text=MINIMAL)
    (d,) = problems(MINIMAL, "optimizer.kind=adamw", "optimizer.nesterov=true")
    assert d.path == "optimizer.nesterov"


def test_a_warm_up_above_the_rate_is_fine_without_warm_up() -> None:
    r = load_recipe("r.yaml", ["schedule.warmup_lr=5"], text=MINIMAL)
    assert r.schedule.warmup_epochs == 0


def test_rendered_diagnostic_has_position_caret_and_hint() -> None:
    (d,) = problems("ghostspec-recipe: 1\nlabel_smothing: 0.1\n")
    assert d.render().splitlines() == [
        "r.yaml:2:1: error: label_smothing: unknown field 'label_smothing'",
        "    2 | label_smothing: 0.1",
        "      | ^",
        "      = hint: did you mean 'label_smoothing'?",
    ]


# --- overrides ------------------------------------------------------------------------------


def test_overrides_set_and_create_values() -> None:
    r = load_recipe(
        "finetune",
        ["epochs=3", "ema.decay=0.99", "augment.randaugment.magnitude=5", "input_size=[96, 96]"],
    )
    assert r.epochs == 3
    assert r.ema is not None and r.ema.decay == 0.99  # created inside finetune's `ema: null`
    assert r.augment.randaugment is not None and r.augment.randaugment.magnitude == 5
    assert r.input_size == (96, 96)
    assert load_recipe("imagenet", ["ema=null"]).ema is None


def test_a_refused_override_points_at_the_value_it_replaced() -> None:
    path = RECIPES_DIR / "imagenet.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith("epochs:"))
    with pytest.raises(SpecError) as caught:
        load_recipe(path, ["epochs=0"])
    (d,) = caught.value.diagnostics
    assert (d.line, d.column, d.override) == (line, len("epochs: ") + 1, "epochs=0")
    assert d.render().startswith(
        f"{path}:{line}:9: error: epochs: 0 is below the minimum 1 (from --hp epochs=0)"
    )


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("epochs", "is not of the form key.path=value"),
        ("epochs.x=3", "epochs.x: cannot descend into a scalar value"),
        ("augment.crop.scale.5=1", "index 5 is out of range (the list has 2 items)"),
    ],
)
def test_override_syntax_and_structure(override: str, words: str) -> None:
    (d,) = problems(
        "ghostspec-recipe: 1\nepochs: 3\naugment: {crop: {scale: [0.1, 1]}}\n", override
    )
    assert words in d.message
    if "key.path" in words:
        assert d.hint is not None and "--hp epochs=3" in d.hint


def test_created_unknown_key_has_no_position_and_a_suggestion() -> None:
    (d,) = problems(MINIMAL, "optimizer.weight_decy=0.1")
    assert at(d) == (None, None)
    assert d.hint == "did you mean 'weight_decay'?"
    assert "(from --hp optimizer.weight_decy=0.1)" in d.render()


# --- files: short names, the wrong language, missing files ---------------------------------


def test_short_names_resolve_to_the_shipped_files() -> None:
    assert load_recipe("imagenet") == load_recipe(ROOT / "recipes" / "imagenet.yaml")
    assert default_recipe() == load_recipe("finetune") == load_recipe(RECIPES_DIR / "finetune.yaml")


def test_shipped_recipes_are_the_top_level_folder() -> None:
    """One copy: recipes/ at the top, which setup.py ships inside the package (test_wheel.py
    checks the wheel carries it)."""
    assert RECIPES_DIR == ROOT / "recipes"
    assert sorted(p.name for p in RECIPES_DIR.glob("*.yaml")) == ["finetune.yaml", "imagenet.yaml"]
    assert '"recipes"' in (ROOT / "setup.py").read_text(encoding="utf-8")


def test_missing_recipe_names_the_short_names(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_recipe(tmp_path / "nope.yaml")
    (d,) = caught.value.diagnostics
    assert d.message == "no such recipe file"
    assert d.hint is not None and "finetune, imagenet" in d.hint


def test_a_spec_is_not_a_recipe_and_a_recipe_is_not_a_spec() -> None:
    with pytest.raises(SpecError) as caught:
        load_recipe(ROOT / "specs" / "large.yaml")
    (d,) = caught.value.diagnostics
    assert "this is a network spec (`ghostspec:`), not a training recipe" in d.message
    assert d.line is not None and d.hint is not None and "ghostspec-recipe: 1" in d.hint
    with pytest.raises(SpecError) as caught:
        ghostspec.load(RECIPES_DIR / "imagenet.yaml")
    (d,) = caught.value.diagnostics
    assert "this is a training recipe (`ghostspec-recipe:`), not a network spec" in d.message
    assert d.hint is not None and "train --recipe" in d.hint


def test_empty_recipe_says_how_a_recipe_starts() -> None:
    (d,) = problems("# nothing\n")
    assert d.message == "the file is empty"
    assert d.hint == "a recipe starts with `ghostspec-recipe: 1`"


def test_wrong_version() -> None:
    (d,) = problems("ghostspec-recipe: 2\n")
    assert d.path == "ghostspec-recipe"
    assert at(d) == (1, 19)


# --- the command line on recipes ------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_validate_recipes_and_specs_together(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["validate", "recipes/imagenet.yaml", "specs/small.yaml", "recipes/finetune.yaml"])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "recipes/imagenet.yaml: ok (recipe ghostnetv2-imagenet, 450 epochs, batch 1024, "
        "rmsprop at lr 0.064)",
        "specs/small.yaml: ok (ghostnet_small, 11 blocks, 2,341,808 parameters)",
        "recipes/finetune.yaml: ok (recipe finetune, 10 epochs, batch 32, adamw at lr 0.002)",
    ]


def test_validate_json_with_hp(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = write(tmp_path, MINIMAL + "epochs: 3\n")
    argv = ["validate", "recipes/imagenet.yaml", str(bad), "--format", "json"]
    code = run([*argv, "--hp", "batch_size=256", "--hp", "seed=-1"])
    report = json.loads(capsys.readouterr().out)
    assert code == 2
    assert report["valid"] == []  # both recipes get the bad --hp
    assert {d["file"] for d in report["diagnostics"]} == {"recipes/imagenet.yaml", str(bad)}
    assert all(
        d["override"] == "seed=-1" and d["override_flag"] == "--hp" for d in report["diagnostics"]
    )
    assert run([*argv, "--hp", "batch_size=256"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"][0] == {
        "file": "recipes/imagenet.yaml",
        "kind": "recipe",
        "name": "ghostnetv2-imagenet",
        "epochs": 450,
        "batch_size": 256,
        "optimizer": "rmsprop",
        "lr": pytest.approx(0.064 / 4),
    }


def test_set_and_hp_go_to_their_own_documents(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["validate", "specs/small.yaml", "recipes/finetune.yaml", "--set", "width=0.5"]
    assert run([*argv, "--hp", "epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "2 epochs" in out and "ghostnet_small" in out


def test_validate_a_file_that_is_neither(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "# a comment\nname: tiny\nepochs: 3\n")
    assert run(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2:1: error: the file is neither a network spec nor a training recipe" in err
    assert "`ghostspec: 1`" in err and "`ghostspec-recipe: 1`" in err
    assert run(["fmt", "--check", str(path)]) == 2


def test_fmt_rewrites_a_recipe_and_keeps_comments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        """\
        ghostspec-recipe: 1   # version
        augment:
          crop:
            scale:
            - 0.5
            - 1.0
        ema: null             # no average
        """,
    )
    assert run(["fmt", "--check", str(path)]) == 1
    assert run(["fmt", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == (
        "ghostspec-recipe: 1   # version\n"
        "augment:\n"
        "  crop:\n"
        "    scale: [0.5, 1.0]\n"
        "ema: null             # no average\n"
    )
    assert run(["fmt", "--check", str(path)]) == 0
    assert load_recipe(path).augment.crop.scale == (0.5, 1.0)  # type: ignore[union-attr]
    capsys.readouterr()


def test_shipped_recipes_are_formatted() -> None:
    assert run(["fmt", "--check", "recipes/imagenet.yaml", "recipes/finetune.yaml"]) == 0


def test_schema_for_recipes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["schema", "--recipe"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert "ghostspec-recipe" in schema["required"]


# --- dumping --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["imagenet", "finetune"])
def test_dump_reads_back_to_the_same_recipe(name: str) -> None:
    recipe = load_recipe(name)
    text = dump_recipe(recipe)
    assert load_recipe("resolved.yaml", text=text) == recipe
    assert "epochs:" in text and "null" in text


def test_dump_of_a_non_sgd_recipe_leaves_nesterov_out() -> None:
    recipe = load_recipe("imagenet")
    assert "nesterov" not in dump_recipe(recipe)
    assert "nesterov: true" in dump_recipe(Recipe.model_validate({"ghostspec-recipe": 1}))


# --- the shipped recipes --------------------------------------------------------------------


def test_imagenet_recipe_has_the_published_numbers() -> None:
    r = load_recipe("imagenet")
    o, s, a = r.optimizer, r.schedule, r.augment
    assert (r.epochs, r.batch_size) == (450, 1024)
    assert (o.kind, o.lr, o.reference_batch, o.epsilon) == ("rmsprop", 0.064, 1024, 1e-3)
    assert (o.momentum, o.rho, o.weight_decay, o.decay_norm_and_bias) == (0.9, 0.9, 1e-5, False)
    assert r.scaled_lr == pytest.approx(0.064)
    assert (s.kind, s.decay_rate, s.decay_epochs) == ("step", 0.973, 2.4)
    assert (s.warmup_epochs, s.warmup_lr) == (3, 1e-6)
    assert r.label_smoothing == 0.1
    assert r.ema is not None and r.ema.decay == 0.9999
    assert a.randaugment is not None
    assert (a.randaugment.magnitude, a.randaugment.magnitude_std, a.randaugment.layers) == (
        9,
        0.5,
        2,
    )
    assert a.erasing == 0.2 and a.flip
    assert a.crop is not None and a.crop.scale == (0.08, 1.0)
    assert r.eval.crop_pct == 0.875
    assert r.input_size is None  # the spec's (dropout too: head.dropout)


def test_imagenet_recipe_cites_its_sources() -> None:
    text = (RECIPES_DIR / "imagenet.yaml").read_text(encoding="utf-8")
    assert "huawei-noah/Efficient-AI-Backbones" in text
    assert "ghostnetv2_pytorch/README.md" in text
    cited = [line for line in text.splitlines() if not line.startswith("#") and ":" in line]
    for key in ("epochs", "lr", "epsilon", "decay_rate", "decay_epochs", "warmup_lr", "erasing"):
        line = next(x for x in cited if x.strip().startswith(f"{key}:"))
        assert "[cmd]" in line, line
    for key in ("warmup_epochs", "label_smoothing", "seed"):
        line = next(x for x in cited if x.strip().startswith(f"{key}:"))
        assert "[args]" in line, line


def test_finetune_recipe_is_short_and_light() -> None:
    r = default_recipe()
    assert r.name == "finetune"
    assert r.epochs <= 20 and r.batch_size <= 64
    assert r.schedule.kind == "cosine" and 0 < r.schedule.warmup_epochs <= 2
    assert r.label_smoothing == 0.1
    assert r.ema is None and r.augment.randaugment is None and r.augment.erasing == 0
    assert r.optimizer.kind == "adamw"


def test_readme_example_is_the_defaults() -> None:
    """The README's recipe by example states every default; it must stay true."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```yaml\nghostspec-recipe: 1\n", 1)[1].split("```", 1)[0]
    example = load_recipe("README.md", text=MINIMAL + block)
    assert example == load_recipe("r.yaml", text=MINIMAL)
    assert "distill" in block and "early_stopping" in block
