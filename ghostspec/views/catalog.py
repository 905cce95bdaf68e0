"""The registry as a listing: each registered model with its costs from its plan (`list`)."""

from __future__ import annotations

from ghostspec.language.names import ENTRIES


def catalog() -> list[dict[str, object]]:
    """One record per registered model: totals at 224x224 from its plan, as built and deployed."""
    from ghostspec.plan.fuse import fuse_plan
    from ghostspec.plan.pipeline import plan as plan_of

    records: list[dict[str, object]] = []
    for entry in ENTRIES:
        plan = plan_of(entry.name)
        deploy = fuse_plan(plan)
        records.append(
            {
                "name": entry.name,
                "spec": entry.spec,
                "width": entry.width,
                "params": plan.params,
                "macs": plan.macs,
                "deploy_params": deploy.params,
                "deploy_macs": deploy.macs,
                "input_shape": list(plan.input_shape),
                "description": entry.description,
            }
        )
    return records


def _millions(value: object) -> str:
    return "-" if not isinstance(value, int) else f"{value / 1e6:.2f} M"


def render_catalog(records: list[dict[str, object]]) -> str:
    """The registry as a terminal table (rich, imported here)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="registered models (MACs at 224x224, 1000 classes)", title_justify="left")
    for column, right in (
        ("name", False),
        ("params", True),
        ("MACs", True),
        ("deployed", True),
        ("description", False),
    ):
        table.add_column(
            column, justify="right" if right else "left", no_wrap=column != "description"
        )
    for r in records:
        same = (r["deploy_params"], r["deploy_macs"]) == (r["params"], r["macs"])
        deployed = (
            "-" if same else f"{_millions(r['deploy_params'])}, {_millions(r['deploy_macs'])}"
        )
        table.add_row(
            str(r["name"]),
            _millions(r["params"]),
            _millions(r["macs"]),
            deployed,
            str(r["description"]),
        )
    console = Console(width=160, record=True, force_terminal=False, color_system=None)
    with console.capture() as capture:
        console.print(table)
    note = (
        "deployed: parameters and MACs after `ghostspec.fuse` folds GhostNetV3's branches. "
        "Use a name wherever a command takes a SPEC, e.g. `ghostspec inspect ghostnet_100`."
    )
    return capture.get() + note
