"""The models a session trains, built inside the distribution strategy's scope.

The student, its compiled training model (with the distillation teacher, if any), the optimizer
and schedule, and the float32 twins that best.keras and last.keras are saved from.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from ghostspec.plan.ir import Classifier
from ghostspec.train.checks import input_error
from ghostspec.train.outcome import Echo

if TYPE_CHECKING:
    import tensorflow as tf
    from keras import Model
    from keras.optimizers import Optimizer

    from ghostspec.train.distill import Teacher
    from ghostspec.train.inputs import Setup
    from ghostspec.train.optim import WarmupSchedule


@dataclass(frozen=True)
class Built:
    """What the session builds inside the strategy's scope."""

    net: Model  # the student as Keras builds it (mixed precision: float32 logits appended)
    model: Model  # the compiled training model fit runs (distill.training_model)
    twin: Model  # the student in float32, uncompiled: what best.keras and deploy.keras hold
    last: Model  # the student in float32, compiled with the optimizer: what last.keras holds
    optimizer: Optimizer  # the recipe's (in a LossScaleOptimizer for float16)
    schedule: WarmupSchedule


def build_training(
    setup: Setup,
    keras: ModuleType,
    strategy: tf.distribute.Strategy,
    steps: int,
    replicas: int,
    multi: bool,
    train_ds: tf.data.Dataset,
    echo: Echo,
) -> Built:
    """The student and its training model compiled in `strategy`'s scope, built from the shapes
    of `train_ds`; `echo` receives the line naming the distillation teacher."""
    from ghostspec.keras.build import build as build_model_from
    from ghostspec.train.distill import training_model
    from ghostspec.train.distribute import synchronize_batch_norm
    from ghostspec.train.fastbn import fuse_batch_norm_for_training
    from ghostspec.train.optim import make_optimizer, make_schedule
    from ghostspec.train.precision import float32_logits, policy

    s, recipe, plan = setup, setup.recipe, setup.plan
    head = plan.nodes[-1]
    assert isinstance(head, Classifier)
    probabilities = head.activation != "linear"
    classes = len(s.images.classes)

    def compile_(model: Model, optimizer: Optimizer) -> None:
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=not probabilities, label_smoothing=recipe.label_smoothing
            ),
            metrics=[
                keras.metrics.CategoricalAccuracy(name="top1"),
                keras.metrics.TopKCategoricalAccuracy(k=min(5, classes), name="top5"),
            ],
        )

    distill = recipe.distill
    with strategy.scope():
        with policy(recipe.precision):
            net = build_model_from(plan)
        net = float32_logits(net)  # the loss and softmax in float32 (mixed precision)
        synchronize_batch_norm(net, replicas)  # before fusing: synchronised layers stay
        fuse_batch_norm_for_training(net)  # same function, about 30% faster steps
        if s.weights is not None:
            from ghostspec.keras.weights import load_weights

            load_weights(net, plan, s.weights, skip=s.skip)
        teacher = None if distill is None else load_teacher(setup, echo)
        schedule = make_schedule(recipe, steps)
        optimizer = make_optimizer(recipe, net, schedule)
        with policy(recipe.precision):  # mixed_float16: compile adds loss scaling
            model = training_model(
                net,
                teacher=teacher,
                weight=1.0 if distill is None else float(distill.weight),
                temperature=1.0 if distill is None else float(distill.temperature),
                probabilities=probabilities,
                multi_worker=multi,
            )
        compile_(model, optimizer)
        # Build the model's metrics and optimizer from the data's shapes now: fit would
        # draw a batch to do it under a strategy (shifting the data order, and failing
        # across workers: tensorflow/tensorflow#72388).
        specs = train_ds.element_spec
        model._symbolic_build(data_batch=specs)
    model._maybe_symbolic_build = lambda *args, **kwargs: None
    twin = build_model_from(plan)  # float32, uncompiled config: loads without ghostspec
    if [w.path for w in twin.weights] != [w.path for w in net.weights] or [
        w.path for w in twin.trainable_weights
    ] != [w.path for w in model.trainable_weights]:
        raise RuntimeError("the saved model's weights do not line up with the trained one's")
    inner = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    last = build_model_from(plan)
    compile_(last, inner)  # last.keras carries the optimizer's state with the weights
    return Built(
        net=net,
        model=model,
        twin=twin,
        last=last,
        optimizer=model.optimizer,
        schedule=schedule,
    )


def load_teacher(setup: Setup, echo: Echo) -> Teacher:
    """The distillation teacher, loaded (inside the strategy's scope) and checked against the
    student: the same classes and channels; its input resized and re-normalised to its own."""
    from ghostspec.train.distill import Teacher, renormalisation

    s = setup
    distill = s.recipe.distill
    assert distill is not None  # called for a recipe with a distill section
    plan = s.plan
    student_norm = (tuple(plan.mean), tuple(plan.std))
    if s.teacher_plan is not None:
        from ghostspec.keras.build import build as build_model_from
        from ghostspec.keras.weights import load_weights

        tplan = s.teacher_plan
        model = build_model_from(tplan)
        assert s.teacher_weights is not None
        load_weights(model, tplan, s.teacher_weights)
        th, tw, _ = tplan.input_shape
        assert th is not None and tw is not None  # the teacher's plan is lowered at a fixed size
        size: tuple[int, int] | None = (th, tw)
        norm = renormalisation(student_norm, (tuple(tplan.mean), tuple(tplan.std)))
        head = tplan.nodes[-1]
        probabilities = isinstance(head, Classifier) and head.activation != "linear"
        teacher = distill.teacher
        assert not isinstance(teacher, str)  # a teacher plan exists for {spec, weights} only
        source = str(teacher.spec)
    else:
        from ghostspec.keras.modelfile import image_input_shape, load_model_file

        source = str(distill.teacher)
        loaded = load_model_file(source, compile=False)
        model = loaded.model
        h, w, c = image_input_shape(model, source)
        outputs = int(model.outputs[0].shape[-1])
        if outputs != len(s.images.classes) or c != int(plan.input_shape[2]):
            raise input_error(
                source,
                f"the teacher takes {c} channels and has {outputs} outputs; the student "
                f"takes {plan.input_shape[2]} and the data has {len(s.images.classes)} "
                "classes",
                "distil from a teacher trained on the same classes and channels",
            )
        own = None if h is None or w is None else (h, w)
        given = distill.teacher_input_size
        size = (given[0], given[1]) if given else own
        meta = loaded.metadata
        norm = (
            None
            if meta is None or meta.mean is None or meta.std is None
            else renormalisation(student_norm, (meta.mean, meta.std))
        )
        probabilities = _ends_in_softmax(model)
    if size == s.size:
        size = None
    echo(
        f"distilling from {source}"
        + ("" if size is None else f" at {size[0]}x{size[1]}")
        + f": weight {distill.weight}, temperature {distill.temperature}"
    )
    return Teacher(
        model=model,
        size=size,
        scale=None if norm is None else norm[0],
        shift=None if norm is None else norm[1],
        probabilities=probabilities,
    )


def _ends_in_softmax(model: Model) -> bool:
    """Whether a loaded classifier's output is softmax probabilities rather than logits (its
    last layer applies a softmax: ghostspec's `classifier_activation: softmax`)."""
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "") == "softmax"
